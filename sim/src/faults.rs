//! The faults of the safety phase, drawn from the run's RNG: crashes and restarts, pauses, symmetric and
//! one-way partitions, controller failovers, on top of a lossy, duplicating, reordering network; and the
//! healing that starts the liveness phase.

use rand::Rng;
use rand::rngs::StdRng;

use crate::net::{CONTROLLER, NetworkProfile, NodeId};
use crate::world::{Ev, World};

#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// Inject a random fault and schedule the next one.
    Next,
    Restart(NodeId),
    Heal(Vec<(NodeId, NodeId)>),
}

/// The network of one run; `harsh` runs lose, duplicate and delay far more.
pub(crate) fn network_profile(rng: &mut StdRng, harsh: bool) -> NetworkProfile {
    if harsh {
        return NetworkProfile {
            drop_percent: rng.random_range(5..=25),
            duplicate_percent: rng.random_range(5..=20),
            delay_ms_max: rng.random_range(1..=8),
            slow_percent: rng.random_range(5..=20),
        };
    }
    NetworkProfile {
        drop_percent: rng.random_range(0..=5),
        duplicate_percent: rng.random_range(0..=4),
        delay_ms_max: rng.random_range(1..=8),
        slow_percent: rng.random_range(0..=5),
    }
}

impl World {
    pub(crate) fn schedule_first_fault(&mut self) {
        let at_ms = self.rng.random_range(300..=600);
        self.schedule(at_ms, Ev::Fault(Fault::Next));
    }

    pub(crate) fn apply_fault(&mut self, fault: Fault) {
        match fault {
            Fault::Next if self.healing => {}
            Fault::Next => {
                self.inject_random_fault();
                let gap_ms = if self.options.harsh { 30..=200 } else { 100..=400 };
                let next_ms = self.now_ms + self.rng.random_range(gap_ms);
                self.schedule(next_ms, Ev::Fault(Fault::Next));
            }
            Fault::Restart(id) => {
                if !self.brokers[&id].up {
                    self.start_broker(id);
                }
            }
            Fault::Heal(links) => {
                self.trace(|| format!("fault: heal {links:?}"));
                for link in links {
                    self.cuts.links.remove(&link);
                }
            }
        }
    }

    fn random_broker(&mut self) -> NodeId {
        self.rng.random_range(1..=self.options.brokers)
    }

    fn inject_random_fault(&mut self) {
        let choice = self.rng.random_range(0..100);
        let duration_ms = self.rng.random_range(50..=900);
        match choice {
            0..20 => {
                let id = self.random_broker();
                if self.brokers[&id].up {
                    self.stats.crashes += 1;
                    self.trace(|| format!("fault: crash broker {id} for {duration_ms} ms"));
                    self.crash_broker(id);
                    self.schedule(self.now_ms + duration_ms, Ev::Fault(Fault::Restart(id)));
                }
            }
            20..35 => {
                let id = self.random_broker();
                self.stats.pauses += 1;
                self.trace(|| format!("fault: pause broker {id} for {duration_ms} ms"));
                let until_ms = self.now_ms + duration_ms;
                let current = self.paused_until.entry(id).or_default();
                *current = (*current).max(until_ms);
            }
            35..50 => {
                // A broker cut off from everyone, both ways.
                let id = self.random_broker();
                let others: Vec<NodeId> = self.all_nodes().into_iter().filter(|n| *n != id).collect();
                let links = others.iter().flat_map(|&o| [(id, o), (o, id)]).collect();
                self.cut(links, duration_ms, "isolate");
            }
            50..62 => {
                // A broker that reaches clients and peers but not the controller: its lease runs out.
                let id = self.random_broker();
                self.cut(vec![(id, CONTROLLER), (CONTROLLER, id)], duration_ms, "cut from the controller");
            }
            62..77 => {
                // One-way: `to` hears nothing from `from`.
                let nodes = self.all_nodes();
                let from = nodes[self.rng.random_range(0..nodes.len())];
                let to = self.random_broker();
                if from != to {
                    self.cut(vec![(from, to)], duration_ms, "one-way cut");
                }
            }
            77..87 => {
                let a = self.random_broker();
                let b = self.random_broker();
                if a != b {
                    self.cut(vec![(a, b), (b, a)], duration_ms, "partition");
                }
            }
            _ => {
                self.stats.controller_failovers += 1;
                let until_ms = self.now_ms + duration_ms.min(600);
                self.trace(|| format!("fault: controller failover until {until_ms} ms"));
                self.controller.fail_over(until_ms);
            }
        }
    }

    fn all_nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self.brokers.keys().copied().collect();
        nodes.push(CONTROLLER);
        nodes.extend(self.producers.keys().copied());
        nodes.extend(self.consumers.keys().copied());
        nodes
    }

    fn cut(&mut self, links: Vec<(NodeId, NodeId)>, duration_ms: u64, what: &str) {
        self.stats.partitions += 1;
        self.trace(|| format!("fault: {what} {links:?} for {duration_ms} ms"));
        self.cuts.links.extend(links.iter().copied());
        self.schedule(self.now_ms + duration_ms, Ev::Fault(Fault::Heal(links)));
    }

    /// The start of the liveness phase: no more faults, partitions healed, paused processes resumed, crashed
    /// brokers restarted, the controller available, no more message loss; producers finish what they have.
    pub(crate) fn heal_everything(&mut self) {
        self.trace(|| "heal everything".to_string());
        self.healing = true;
        self.cuts.links.clear();
        self.paused_until.clear();
        self.network.drop_percent = 0;
        self.controller.unavailable_until_ms = self.controller.unavailable_until_ms.min(self.now_ms);
        let down: Vec<NodeId> = self.brokers.values().filter(|b| !b.up).map(|b| b.id).collect();
        for id in down {
            self.start_broker(id);
        }
    }
}
