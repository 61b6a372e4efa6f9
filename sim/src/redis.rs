//! A simulated Redis server: exactly the commands acemux's cluster mode sends (`AUTH`,
//! `SELECT`, `PING`, `GET`, `SET` with `NX`/`XX`/`PX`/`EX`, `DEL`, `PEXPIRE`, `PTTL`,
//! `INCR`, `WATCH`/`UNWATCH`/`MULTI`/`EXEC`/`DISCARD`), spoken in RESP2 over the
//! simulated network, behaving as Redis does for them: keys expire in simulated time,
//! a transaction aborts when a key it watched was written (or expired) since the
//! `WATCH`, and nothing is persisted, so a restarted host starts empty, like a Redis
//! without persistence. Anything else is answered with Redis's own error, so a client
//! that starts to rely on another command fails its simulation at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// The port the simulated Redis listens on.
pub const REDIS_PORT: u16 = 6379;

/// Most arguments in one command, and bytes in one argument: a client past either
/// is answered with an error and disconnected.
const MAX_ARGS: usize = 1024;
const MAX_ARG_BYTES: usize = 512 * 1024;

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

/// The keyspace of one run of the server.
#[derive(Debug, Default)]
struct Db {
    entries: BTreeMap<Vec<u8>, Entry>,
    /// Bumped on every write, expiry or delete of a key: what `WATCH` compares.
    versions: BTreeMap<Vec<u8>, u64>,
    next_version: u64,
    /// Commands served, for the world's summary.
    commands: u64,
}

impl Db {
    fn touch(&mut self, key: &[u8]) {
        self.next_version += 1;
        self.versions.insert(key.to_vec(), self.next_version);
    }

    fn version(&self, key: &[u8]) -> u64 {
        self.versions.get(key).copied().unwrap_or(0)
    }

    /// The live entry of `key`, expiring it first if its time has come.
    fn live(&mut self, key: &[u8], now: Instant) -> Option<&mut Entry> {
        let expired = self
            .entries
            .get(key)
            .is_some_and(|entry| entry.expires.is_some_and(|at| at <= now));
        if expired {
            self.entries.remove(key);
            self.touch(key);
        }
        self.entries.get_mut(key)
    }
}

/// What the world may look at while a simulated Redis runs.
#[derive(Clone, Default)]
pub struct RedisView(Arc<Mutex<Option<Arc<Mutex<Db>>>>>);

impl RedisView {
    fn current(&self) -> Option<Arc<Mutex<Db>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The live keys and their values (as text), in key order; empty while down.
    pub fn keys(&self) -> Vec<(String, String)> {
        let Some(db) = self.current() else {
            return Vec::new();
        };
        let now = Instant::now();
        let db = lock(&db);
        db.entries
            .iter()
            .filter(|(_, entry)| entry.expires.is_none_or(|at| at > now))
            .map(|(key, entry)| {
                (
                    String::from_utf8_lossy(key).into_owned(),
                    String::from_utf8_lossy(&entry.value).into_owned(),
                )
            })
            .collect()
    }

    /// Commands served by the running server.
    pub fn commands(&self) -> u64 {
        self.current().map_or(0, |db| lock(&db).commands)
    }
}

fn lock(db: &Mutex<Db>) -> MutexGuard<'_, Db> {
    db.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs a simulated Redis on this host until the host stops; `password` as
/// `requirepass` (the default user).
pub async fn redis_server(password: Option<String>, view: RedisView) -> turmoil::Result {
    let db = Arc::new(Mutex::new(Db::default()));
    *view.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(db.clone());
    let listener =
        turmoil::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], REDIS_PORT))).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let (db, password) = (db.clone(), password.clone());
        tokio::spawn(async move {
            if let Err(error) = serve(stream, db, password).await {
                tracing::debug!(%error, "simulated redis connection ended");
            }
        });
    }
}

/// One connection's transaction state.
#[derive(Default)]
struct Session {
    authenticated: bool,
    /// Keys watched and their versions then.
    watched: Vec<(Vec<u8>, u64)>,
    /// Commands queued since `MULTI` (`None` outside a transaction).
    queued: Option<Vec<Args>>,
    /// A queued command was refused: `EXEC` aborts.
    dirty: bool,
}

async fn serve(
    mut stream: turmoil::net::TcpStream,
    db: Arc<Mutex<Db>>,
    password: Option<String>,
) -> std::io::Result<()> {
    let mut session = Session {
        authenticated: password.is_none(),
        ..Session::default()
    };
    let mut input = BytesMut::with_capacity(4096);
    let mut output = Vec::new();
    loop {
        loop {
            match parse(&input) {
                Ok(Some((args, used))) => {
                    input.advance(used);
                    let reply = handle(&db, &mut session, password.as_deref(), args);
                    reply.encode(&mut output);
                }
                Ok(None) => break,
                Err(error) => {
                    Reply::Error(format!("ERR Protocol error: {error}")).encode(&mut output);
                    stream.write_all(&output).await?;
                    return Ok(());
                }
            }
        }
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
        if stream.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
    }
}

/// A command's arguments, the name first.
type Args = Vec<Vec<u8>>;

/// One command (an array of bulk strings) from the front of `input`: the arguments
/// and the bytes it took, `None` while incomplete.
fn parse(input: &[u8]) -> Result<Option<(Args, usize)>, String> {
    fn line(input: &[u8], from: usize) -> Option<(&[u8], usize)> {
        let end = input.get(from..)?.windows(2).position(|w| w == b"\r\n")?;
        Some((&input[from..from + end], from + end + 2))
    }
    fn number(text: &[u8]) -> Result<usize, String> {
        std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| format!("invalid length {:?}", String::from_utf8_lossy(text)))
    }
    let Some((head, mut at)) = line(input, 0) else {
        return Ok(None);
    };
    let Some(count) = head.strip_prefix(b"*") else {
        return Err("expected an array of bulk strings".into());
    };
    let count = number(count)?;
    if count == 0 || count > MAX_ARGS {
        return Err(format!("{count} arguments"));
    }
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let Some((head, next)) = line(input, at) else {
            return Ok(None);
        };
        let Some(length) = head.strip_prefix(b"$") else {
            return Err("expected a bulk string".into());
        };
        let length = number(length)?;
        if length > MAX_ARG_BYTES {
            return Err(format!("argument of {length} bytes"));
        }
        let end = next + length;
        if input.len() < end + 2 {
            return Ok(None);
        }
        if &input[end..end + 2] != b"\r\n" {
            return Err("bulk string not terminated".into());
        }
        args.push(input[next..end].to_vec());
        at = end + 2;
    }
    Ok(Some((args, at)))
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Simple(&'static str),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(text) => out.extend_from_slice(format!("+{text}\r\n").as_bytes()),
            Reply::Error(text) => out.extend_from_slice(format!("-{text}\r\n").as_bytes()),
            Reply::Int(value) => out.extend_from_slice(format!(":{value}\r\n").as_bytes()),
            Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Reply::Bulk(Some(bytes)) => {
                out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(Some(items)) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }
}

fn wrong_arity(name: &str) -> Reply {
    Reply::Error(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

fn handle(
    db: &Mutex<Db>,
    session: &mut Session,
    password: Option<&str>,
    args: Vec<Vec<u8>>,
) -> Reply {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    lock(db).commands += 1;
    if name == "AUTH" {
        let given = match args.len() {
            2 => &args[1],
            3 if args[1] == b"default" => &args[2],
            3 => {
                return Reply::Error(
                    "WRONGPASS invalid username-password pair or user is disabled.".into(),
                )
            }
            _ => return wrong_arity(&name),
        };
        return match password {
            None => Reply::Error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?".into(),
            ),
            Some(password) if given.as_slice() == password.as_bytes() => {
                session.authenticated = true;
                Reply::Simple("OK")
            }
            Some(_) => Reply::Error(
                "WRONGPASS invalid username-password pair or user is disabled.".into(),
            ),
        };
    }
    if !session.authenticated {
        return Reply::Error("NOAUTH Authentication required.".into());
    }
    match (name.as_str(), session.queued.is_some()) {
        ("MULTI", true) => Reply::Error("ERR MULTI calls can not be nested".into()),
        ("MULTI", false) => {
            session.queued = Some(Vec::new());
            session.dirty = false;
            Reply::Simple("OK")
        }
        ("WATCH", true) => Reply::Error("ERR WATCH inside MULTI is not allowed".into()),
        ("WATCH", false) if args.len() < 2 => wrong_arity(&name),
        ("WATCH", false) => {
            let mut db = lock(db);
            let now = Instant::now();
            for key in &args[1..] {
                db.live(key, now);
                let version = db.version(key);
                session.watched.push((key.clone(), version));
            }
            Reply::Simple("OK")
        }
        ("DISCARD", false) => Reply::Error("ERR DISCARD without MULTI".into()),
        ("DISCARD", true) => {
            session.queued = None;
            session.watched.clear();
            Reply::Simple("OK")
        }
        ("EXEC", false) => Reply::Error("ERR EXEC without MULTI".into()),
        ("EXEC", true) => {
            let queued = session.queued.take().unwrap_or_default();
            let watched = std::mem::take(&mut session.watched);
            if std::mem::take(&mut session.dirty) {
                return Reply::Error(
                    "EXECABORT Transaction discarded because of previous errors.".into(),
                );
            }
            let mut db = lock(db);
            let now = Instant::now();
            for (key, _) in &watched {
                db.live(key, now);
            }
            if watched.iter().any(|(key, seen)| db.version(key) != *seen) {
                return Reply::Array(None);
            }
            Reply::Array(Some(
                queued
                    .into_iter()
                    .map(|command| execute(&mut db, command))
                    .collect(),
            ))
        }
        (_, true) => match check(&args) {
            Ok(()) => {
                session.queued.get_or_insert_with(Vec::new).push(args);
                Reply::Simple("QUEUED")
            }
            Err(error) => {
                session.dirty = true;
                error
            }
        },
        ("UNWATCH", false) => {
            session.watched.clear();
            Reply::Simple("OK")
        }
        (_, false) => match check(&args) {
            Ok(()) => execute(&mut lock(db), args),
            Err(error) => error,
        },
    }
}

/// Whether `args` is a known command with a valid number of arguments.
fn check(args: &[Vec<u8>]) -> Result<(), Reply> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    let arity_ok = match name.as_str() {
        "PING" => args.len() <= 2,
        "GET" | "INCR" | "PTTL" | "SELECT" => args.len() == 2,
        "SET" => args.len() >= 3,
        "DEL" => args.len() >= 2,
        "PEXPIRE" => args.len() == 3,
        "UNWATCH" => args.len() == 1,
        _ => {
            return Err(Reply::Error(format!(
                "ERR unknown command '{}', with args beginning with: ",
                String::from_utf8_lossy(&args[0])
            )))
        }
    };
    if arity_ok {
        Ok(())
    } else {
        Err(wrong_arity(&name))
    }
}

fn integer(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Runs one checked command.
fn execute(db: &mut Db, args: Vec<Vec<u8>>) -> Reply {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    let now = Instant::now();
    match name.as_str() {
        "PING" => match args.get(1) {
            Some(text) => Reply::Bulk(Some(text.clone())),
            None => Reply::Simple("PONG"),
        },
        "SELECT" => match integer(&args[1]) {
            Some(0) => Reply::Simple("OK"),
            _ => Reply::Error("ERR DB index is out of range".into()),
        },
        "GET" => Reply::Bulk(db.live(&args[1], now).map(|entry| entry.value.clone())),
        "PTTL" => match db.live(&args[1], now) {
            None => Reply::Int(-2),
            Some(Entry { expires: None, .. }) => Reply::Int(-1),
            Some(Entry {
                expires: Some(at), ..
            }) => Reply::Int(i64::try_from((*at - now).as_millis()).unwrap_or(i64::MAX)),
        },
        "SET" => set(db, &args, now),
        "DEL" => {
            let mut removed = 0;
            for key in &args[1..] {
                if db.live(key, now).is_some() {
                    db.entries.remove(key);
                    db.touch(key);
                    removed += 1;
                }
            }
            Reply::Int(removed)
        }
        "PEXPIRE" => {
            let Some(millis) = integer(&args[2]) else {
                return Reply::Error("ERR value is not an integer or out of range".into());
            };
            let key = &args[1];
            if db.live(key, now).is_none() {
                return Reply::Int(0);
            }
            if millis <= 0 {
                db.entries.remove(key);
            } else if let Some(entry) = db.entries.get_mut(key) {
                entry.expires = Some(now + Duration::from_millis(millis.unsigned_abs()));
            }
            db.touch(key);
            Reply::Int(1)
        }
        "INCR" => {
            let key = &args[1];
            let current = match db.live(key, now) {
                None => 0,
                Some(entry) => match integer(&entry.value) {
                    Some(value) => value,
                    None => {
                        return Reply::Error("ERR value is not an integer or out of range".into())
                    }
                },
            };
            let Some(next) = current.checked_add(1) else {
                return Reply::Error("ERR increment or decrement would overflow".into());
            };
            let expires = db.entries.get(key).and_then(|entry| entry.expires);
            db.entries.insert(
                key.clone(),
                Entry {
                    value: next.to_string().into_bytes(),
                    expires,
                },
            );
            db.touch(key);
            Reply::Int(next)
        }
        "UNWATCH" => Reply::Simple("OK"),
        _ => Reply::Error(format!("ERR unknown command '{name}'")),
    }
}

/// `SET key value [NX | XX] [PX ms | EX s]`.
fn set(db: &mut Db, args: &[Vec<u8>], now: Instant) -> Reply {
    let (key, value) = (&args[1], &args[2]);
    let (mut only_new, mut only_existing, mut ttl) = (false, false, None);
    let mut options = args[3..].iter();
    while let Some(option) = options.next() {
        match String::from_utf8_lossy(option)
            .to_ascii_uppercase()
            .as_str()
        {
            "NX" => only_new = true,
            "XX" => only_existing = true,
            unit @ ("PX" | "EX") => {
                let Some(amount) = options.next().and_then(|amount| integer(amount)) else {
                    return Reply::Error("ERR value is not an integer or out of range".into());
                };
                if amount <= 0 || ttl.is_some() {
                    return Reply::Error("ERR invalid expire time in 'set' command".into());
                }
                let amount = amount.unsigned_abs();
                ttl = Some(if unit == "PX" {
                    Duration::from_millis(amount)
                } else {
                    Duration::from_secs(amount)
                });
            }
            _ => return Reply::Error("ERR syntax error".into()),
        }
    }
    if only_new && only_existing {
        return Reply::Error("ERR syntax error".into());
    }
    let exists = db.live(key, now).is_some();
    if (only_new && exists) || (only_existing && !exists) {
        return Reply::Bulk(None);
    }
    db.entries.insert(
        key.clone(),
        Entry {
            value: value.clone(),
            expires: ttl.map(|ttl| now + ttl),
        },
    );
    db.touch(key);
    Reply::Simple("OK")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(args: &[&str]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
        out
    }

    #[test]
    fn parses_whole_commands_and_waits_for_partial_ones() {
        let bytes = command(&["SET", "k", "v", "NX", "PX", "10000"]);
        let (args, used) = parse(&bytes).expect("valid").expect("complete");
        assert_eq!(used, bytes.len());
        assert_eq!(args[0], b"SET");
        assert_eq!(args[5], b"10000");
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse(b"GET k\r\n").is_err(), "inline commands are refused");
        assert!(
            parse(b"*1\r\n$3\r\nGETxx").is_err(),
            "an unterminated bulk string"
        );
    }

    fn run(db: &Mutex<Db>, session: &mut Session, args: &[&str]) -> Reply {
        handle(
            db,
            session,
            Some("secret"),
            args.iter().map(|arg| arg.as_bytes().to_vec()).collect(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn keys_expire_and_watched_transactions_abort_on_a_write() {
        let db = Mutex::new(Db::default());
        let mut a = Session::default();
        let mut b = Session::default();
        assert!(
            matches!(run(&db, &mut a, &["GET", "k"]), Reply::Error(e) if e.starts_with("NOAUTH"))
        );
        assert_eq!(run(&db, &mut a, &["AUTH", "secret"]), Reply::Simple("OK"));
        assert_eq!(
            run(&db, &mut b, &["AUTH", "default", "secret"]),
            Reply::Simple("OK")
        );

        assert_eq!(
            run(&db, &mut a, &["SET", "k", "1", "NX", "PX", "1000"]),
            Reply::Simple("OK")
        );
        assert_eq!(
            run(&db, &mut b, &["SET", "k", "2", "NX", "PX", "1000"]),
            Reply::Bulk(None)
        );
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(
            run(&db, &mut b, &["GET", "k"]),
            Reply::Bulk(None),
            "expired"
        );
        assert_eq!(
            run(&db, &mut b, &["SET", "k", "2", "NX", "PX", "1000"]),
            Reply::Simple("OK")
        );

        assert_eq!(run(&db, &mut a, &["INCR", "n"]), Reply::Int(1));
        assert_eq!(run(&db, &mut a, &["INCR", "n"]), Reply::Int(2));

        // a watches k; b writes it; a's transaction aborts.
        assert_eq!(run(&db, &mut a, &["WATCH", "k"]), Reply::Simple("OK"));
        assert_eq!(run(&db, &mut b, &["PEXPIRE", "k", "5000"]), Reply::Int(1));
        assert_eq!(run(&db, &mut a, &["MULTI"]), Reply::Simple("OK"));
        assert_eq!(run(&db, &mut a, &["DEL", "k"]), Reply::Simple("QUEUED"));
        assert_eq!(run(&db, &mut a, &["EXEC"]), Reply::Array(None));
        // Unwritten since the WATCH: it runs.
        assert_eq!(run(&db, &mut a, &["WATCH", "k"]), Reply::Simple("OK"));
        assert_eq!(run(&db, &mut a, &["MULTI"]), Reply::Simple("OK"));
        assert_eq!(run(&db, &mut a, &["DEL", "k"]), Reply::Simple("QUEUED"));
        assert_eq!(
            run(&db, &mut a, &["EXEC"]),
            Reply::Array(Some(vec![Reply::Int(1)]))
        );
        assert_eq!(run(&db, &mut a, &["PTTL", "k"]), Reply::Int(-2));
        // An unknown command is refused, and poisons a transaction.
        assert_eq!(run(&db, &mut a, &["MULTI"]), Reply::Simple("OK"));
        assert!(matches!(
            run(&db, &mut a, &["EVAL", "return 1", "0"]),
            Reply::Error(_)
        ));
        assert!(
            matches!(run(&db, &mut a, &["EXEC"]), Reply::Error(e) if e.starts_with("EXECABORT"))
        );
    }
}
