//! Engines come from an orchestrator's list, and the list changes mid-stream: the
//! engine serving a channel leaves the list (its channel keeps playing there, nobody
//! moves), the list turns unreadable for a while (the last good list stays), and a new
//! channel starts meanwhile (it lands on a listed engine). Events stay paired, and no
//! engine session outlives its stream.

use serde_json::json;

use crate::world::{Failure, Outcome, World, WorldConfig, GLUETUN_BASE_PORT};

use super::{health_probe, secs, ts_reader};

/// The list naming engines `indexes` (0-based), in the Python orchestrator's shape.
fn list(indexes: &[usize]) -> String {
    let engines: Vec<_> = indexes
        .iter()
        .map(|index| {
            json!({
                "container_id": format!("engine{}", index + 1),
                "host": "gluetun",
                "port": GLUETUN_BASE_PORT + *index as u16,
            })
        })
        .collect();
    serde_json::Value::Array(engines).to_string()
}

/// The engine ports of the `stream_started` events of `content_id`, in order.
fn started_on(world: &World<'_>, content_id: &str) -> Vec<u16> {
    world
        .events()
        .iter()
        .filter(|event| {
            event.kind == acemux_core::lifecycle::EventKind::StreamStarted
                && event.stream.stream.key == content_id
        })
        .map(|event| event.stream.engine.port)
        .collect()
}

/// The orchestrator churn scenario.
pub fn orchestrator_churn(seed: u64) -> Result<Outcome, Failure> {
    let mut config = WorldConfig::new("orchestrator_churn", seed, 2);
    let first = usize::try_from(seed % 2).unwrap_or(0);
    let other = 1 - first;
    config.orchestrator_list = Some(list(&[first]));
    let start_bound = config.proxy.channel.start_timeout + secs(5);
    let mut world = World::build(config);
    let watch = secs(70);
    world.players(vec![
        ts_reader("v0", 1, secs(3), "listed", watch, start_bound),
        ts_reader("v1", 2, secs(4), "listed", watch, start_bound),
        health_probe("health", secs(75), std::time::Duration::from_secs(1)),
    ]);
    // The serving engine leaves the list, the other joins.
    let moved = world.random_duration(secs(12), secs(20));
    world.run_until(moved)?;
    world.set_orchestrator_list(list(&[other]));
    // The list turns unreadable for a while: the last good list must stay.
    let broken = world.random_duration(secs(25), secs(30));
    world.run_until(broken)?;
    let garbage = if world.random_below(2) == 0 {
        "<html>502 Bad Gateway</html>".to_owned()
    } else {
        "[{\"port\": 1}]".to_owned()
    };
    world.set_orchestrator_list(garbage);
    // A new channel while the list is unreadable.
    let late = world.elapsed() + secs(3);
    world.players(vec![ts_reader(
        "v2",
        3,
        late,
        "late",
        secs(30),
        start_bound,
    )]);
    let repaired = world.random_duration(secs(45), secs(55));
    world.run_until(repaired)?;
    world.set_orchestrator_list(list(&[first, other]));
    world.run_until(secs(80))?;
    let listed = started_on(&world, "listed");
    let late = started_on(&world, "late");
    let (first_port, other_port) = (
        GLUETUN_BASE_PORT + first as u16,
        GLUETUN_BASE_PORT + other as u16,
    );
    if listed != [first_port] {
        return Err(world.fail(format!(
            "the channel moved when its engine left the list: started on {listed:?}"
        )));
    }
    if late != [other_port] {
        return Err(world.fail(format!(
            "the channel started while the list was unreadable did not land on the last listed engine: {late:?}"
        )));
    }
    {
        let record = world.observer.lock();
        for id in 1..=2u64 {
            let kept = record
                .ts_viewers
                .get(&(id * 1000))
                .is_some_and(|viewer| !viewer.ended);
            if !kept {
                return Err(world.fail(format!(
                    "viewer v{} lost its stream when its engine left the list",
                    id - 1
                )));
            }
        }
    }
    let mut outcome = world.heal_then_converge(secs(90))?;
    outcome
        .summary
        .push_str(&format!(", engine{} left the list", first + 1));
    Ok(outcome)
}
