//! The sessions of dead owners this instance claimed (the slot machine's
//! [`SlotOutput::Orphan`](acemux_core::cluster::SlotOutput::Orphan)): each one's end is
//! recorded here (`stream_ended`, reason `owner_lost`: its `stream_started` is in the
//! dead owner's database) and its engine session is stopped through its command URL,
//! retried like every stop. The claim in Redis made this instance the only one to do
//! either, once.

use std::sync::Arc;

use acemux_core::channel::EngineCallConfig;
use acemux_core::cluster::SessionRecord;
use acemux_core::lifecycle::{EndReason, Input};
use tokio::sync::{mpsc, watch};

use crate::engine::EngineClient;
use crate::lifecycle::Lifecycle;
use crate::metrics::{Metrics, SlotEventLabels};
use crate::net::Net;

/// Handles the claimed sessions arriving on `orphans` until `stopped` turns true.
pub async fn handle_orphans<N: Net>(
    lifecycle: Arc<Lifecycle>,
    mut orphans: mpsc::UnboundedReceiver<SessionRecord>,
    engines: EngineClient<N>,
    config: EngineCallConfig,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) {
    let clock = lifecycle.clock();
    loop {
        let record = tokio::select! {
            biased;
            _ = stopped.wait_for(|stopped| *stopped) => return,
            record = orphans.recv() => match record {
                Some(record) => record,
                None => return,
            },
        };
        let end = Input::EndedElsewhere {
            started: Box::new(record.started.clone()),
            started_at: record.started_at,
            reason: EndReason::OwnerLost,
        };
        match lifecycle.apply(end, None).await {
            Ok(applied) => {
                tracing::info!(stream = %record.stream_id, owner = %record.instance, updated = applied.outcome.updated,
                    "recorded the end of a dead owner's stream (owner_lost)");
            }
            Err(error) => {
                tracing::error!(stream = %record.stream_id, owner = %record.instance, %error,
                    "could not record the end of a dead owner's stream");
            }
        }
        let (engines, metrics, mut stopped) = (engines.clone(), metrics.clone(), stopped.clone());
        let config = config.clone();
        tokio::spawn(async move {
            let given_up = crate::leftovers::stop_sessions(
                &clock,
                vec![(record.engine.clone(), record.command_url.clone())],
                &engines,
                config,
                &metrics,
                &mut stopped,
                "of an owner that left it",
            )
            .await;
            let event = if given_up == 0 {
                "orphan_stopped"
            } else {
                "orphan_stop_failed"
            };
            metrics
                .cluster_slot_events
                .get_or_create(&SlotEventLabels {
                    event: event.to_owned(),
                })
                .inc();
        });
    }
}
