//! The proxy as the HTTP routes see it: object-safe, so routes need not know the
//! network type.

use std::collections::BTreeMap;

use acemux_core::channel::{EnginePool, EngineStats};
use acemux_core::hls::SegmentBody;
use futures::future::BoxFuture;

use super::{
    Asker, ChannelKey, ChannelSummary, Client, JoinError, Proxy, StopOutcome, ViewerStream,
    ViewerSummary,
};
use crate::lifecycle::ApplyError;
use crate::net::Net;
use crate::server::ConnectionKill;

/// Answers the player routes, `DELETE /streams/{id}` and the status routes.
pub trait Streams: Send + Sync + 'static {
    /// See [`Proxy::join`].
    fn join(
        &self,
        key: ChannelKey,
        kill: Option<ConnectionKill>,
        client: Client,
    ) -> BoxFuture<'static, Result<ViewerStream, JoinError>>;

    /// See [`Proxy::serves_peer`].
    fn serves_peer(&self, key: &ChannelKey) -> bool;

    /// See [`Proxy::stop_stream`].
    fn stop_stream(
        &self,
        stream_id: String,
        reason: String,
    ) -> BoxFuture<'static, Result<StopOutcome, ApplyError>>;

    /// See [`Proxy::stop_all`].
    fn stop_all(&self) -> BoxFuture<'static, ()>;

    /// See [`Proxy::hls_playlist`].
    fn hls_playlist(
        &self,
        key: ChannelKey,
        viewer: String,
        client: Client,
        asker: Asker,
    ) -> BoxFuture<'static, Result<String, JoinError>>;

    /// See [`Proxy::hls_segment_of`].
    fn hls_segment_of(
        &self,
        key: ChannelKey,
        seq: u64,
        viewer: String,
        client: Client,
        asker: Asker,
    ) -> BoxFuture<'static, Result<Option<SegmentBody>, JoinError>>;

    /// See [`Proxy::hls_segment`].
    fn hls_segment(&self, id: u64, seq: u64, viewer: String, client: Client)
        -> Option<SegmentBody>;

    /// The engines the proxy knows now, with their load.
    fn engine_pool(&self) -> EnginePool;

    /// The latest engine figures of the playing sessions acemux polls, by stream id.
    fn session_stats(&self) -> BTreeMap<String, EngineStats>;

    /// See [`Proxy::channel_summaries`].
    fn channel_summaries(&self) -> Vec<ChannelSummary>;

    /// See [`Proxy::viewers_of_stream`].
    fn viewers_of_stream(&self, stream_id: &str) -> Option<Vec<ViewerSummary>>;

    /// See [`Proxy::viewers_of_key`].
    fn viewers_of_key(&self, key: &str) -> Option<Vec<ViewerSummary>>;
}

impl<N: Net> Streams for Proxy<N> {
    fn join(
        &self,
        key: ChannelKey,
        kill: Option<ConnectionKill>,
        client: Client,
    ) -> BoxFuture<'static, Result<ViewerStream, JoinError>> {
        let proxy = self.clone();
        Box::pin(async move { proxy.join(key, kill, client).await })
    }

    fn serves_peer(&self, key: &ChannelKey) -> bool {
        Proxy::serves_peer(self, key)
    }

    fn stop_stream(
        &self,
        stream_id: String,
        reason: String,
    ) -> BoxFuture<'static, Result<StopOutcome, ApplyError>> {
        let proxy = self.clone();
        Box::pin(async move { proxy.stop_stream(&stream_id, &reason).await })
    }

    fn stop_all(&self) -> BoxFuture<'static, ()> {
        let proxy = self.clone();
        Box::pin(async move { proxy.stop_all().await })
    }

    fn hls_playlist(
        &self,
        key: ChannelKey,
        viewer: String,
        client: Client,
        asker: Asker,
    ) -> BoxFuture<'static, Result<String, JoinError>> {
        let proxy = self.clone();
        Box::pin(async move { proxy.hls_playlist(key, viewer, client, asker).await })
    }

    fn hls_segment_of(
        &self,
        key: ChannelKey,
        seq: u64,
        viewer: String,
        client: Client,
        asker: Asker,
    ) -> BoxFuture<'static, Result<Option<SegmentBody>, JoinError>> {
        let proxy = self.clone();
        Box::pin(async move { proxy.hls_segment_of(key, seq, viewer, client, asker).await })
    }

    fn hls_segment(
        &self,
        id: u64,
        seq: u64,
        viewer: String,
        client: Client,
    ) -> Option<SegmentBody> {
        Proxy::hls_segment(self, id, seq, viewer, client)
    }

    fn engine_pool(&self) -> EnginePool {
        self.pool().clone()
    }

    fn session_stats(&self) -> BTreeMap<String, EngineStats> {
        Proxy::session_stats(self).clone()
    }

    fn channel_summaries(&self) -> Vec<ChannelSummary> {
        Proxy::channel_summaries(self)
    }

    fn viewers_of_stream(&self, stream_id: &str) -> Option<Vec<ViewerSummary>> {
        Proxy::viewers_of_stream(self, stream_id)
    }

    fn viewers_of_key(&self, key: &str) -> Option<Vec<ViewerSummary>> {
        Proxy::viewers_of_key(self, key)
    }
}
