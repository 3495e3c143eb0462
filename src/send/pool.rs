//! A pool of relays: `[smtp]` and any `[[smtp.relays]]`, used by priority and shared by
//! weight.
//!
//! Each message goes to a relay of the lowest priority that is not backed off; among
//! relays of the same priority the load is shared by weight (a smooth weighted
//! round-robin, so weights 2 and 1 send A, B, A, A, B, A…). When a relay fails as a
//! relay (connection refused, a session reply that would hit every message: the
//! [`SendError::Relay`] kind) it is backed off — from `delivery.relay_retry_initial`,
//! doubling up to `delivery.relay_retry_max` — and the same message is offered to the
//! next relay at once, so the others carry the load. A relay answers again after its
//! back-off ends; its first success clears it.
//!
//! Only a relay fault moves a message on. A reply about the recipient stays that
//! recipient's answer, and a message whose final dot went out unanswered
//! ([`SendError::Unknown`]) may have arrived, so it is not sent through another relay.
//! When every relay is backed off, the one due soonest is tried: with a single relay
//! the pool behaves exactly like that relay, and the delivery worker's own back-off paces
//! the retries.

use super::{OutgoingMessage, SendError, Transport};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One relay and what the pool knows of it.
#[derive(Debug)]
struct Member<T> {
    name: String,
    transport: T,
    priority: u32,
    weight: u32,
}

/// The pool's view of each member, under one lock.
#[derive(Debug, Default)]
struct State {
    /// Per member: backed off until then.
    down_until: Vec<Option<Instant>>,
    /// Per member: the next back-off if it fails again.
    next_wait: Vec<Duration>,
    /// Per member: smooth weighted round-robin credit.
    credit: Vec<i64>,
}

/// Several transports used as one.
#[derive(Debug)]
pub struct RelayPool<T> {
    members: Vec<Member<T>>,
    state: Mutex<State>,
    initial: Duration,
    max: Duration,
}

impl<T: Transport> RelayPool<T> {
    /// A pool of `(name, transport, priority, weight)`; a failed relay rests `initial`,
    /// doubling up to `max`.
    pub fn new(relays: Vec<(String, T, u32, u32)>, initial: Duration, max: Duration) -> Self {
        let n = relays.len();
        Self {
            members: relays
                .into_iter()
                .map(|(name, transport, priority, weight)| Member {
                    name,
                    transport,
                    priority,
                    weight: weight.max(1),
                })
                .collect(),
            state: Mutex::new(State {
                down_until: vec![None; n],
                next_wait: vec![initial; n],
                credit: vec![0; n],
            }),
            initial,
            max,
        }
    }

    /// The members, for closing and reporting.
    pub fn relays(&self) -> impl Iterator<Item = (&str, &T)> {
        self.members.iter().map(|m| (m.name.as_str(), &m.transport))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The member to try next at `now`, leaving out those in `tried`.
    fn pick(&self, now: Instant, tried: &[usize]) -> Option<usize> {
        let mut state = self.lock();
        let up: Vec<usize> = (0..self.members.len())
            .filter(|i| !tried.contains(i))
            .filter(|&i| state.down_until[i].is_none_or(|until| until <= now))
            .collect();
        if let Some(best) = up.iter().map(|&i| self.members[i].priority).min() {
            // Smooth weighted round-robin among the best priority.
            let group: Vec<usize> = up
                .into_iter()
                .filter(|&i| self.members[i].priority == best)
                .collect();
            let total: i64 = group
                .iter()
                .map(|&i| i64::from(self.members[i].weight))
                .sum();
            for &i in &group {
                state.credit[i] += i64::from(self.members[i].weight);
            }
            let chosen = *group
                .iter()
                .max_by_key(|&&i| (state.credit[i], std::cmp::Reverse(i)))
                .expect("the group is not empty");
            state.credit[chosen] -= total;
            return Some(chosen);
        }
        if !tried.is_empty() {
            return None;
        }
        // Everyone is resting: the one due soonest, so a lone relay is still tried.
        (0..self.members.len()).min_by_key(|&i| state.down_until[i])
    }

    fn failed(&self, i: usize, now: Instant, error: &SendError) {
        let mut state = self.lock();
        let wait = state.next_wait[i];
        state.down_until[i] = Some(now + wait);
        state.next_wait[i] = (wait * 2).min(self.max);
        if self.members.len() > 1 {
            tracing::warn!(relay = %self.members[i].name, retry_in = ?wait, %error, "relay down; the other relays carry the load");
        }
    }

    fn succeeded(&self, i: usize) {
        let mut state = self.lock();
        if state.down_until[i].take().is_some() && self.members.len() > 1 {
            tracing::info!(relay = %self.members[i].name, "relay back");
        }
        state.next_wait[i] = self.initial;
    }
}

impl<T: Transport> Transport for RelayPool<T> {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), SendError> {
        let mut tried = Vec::new();
        let mut last = None;
        while let Some(i) = self.pick(Instant::now(), &tried) {
            tried.push(i);
            match self.members[i].transport.send(message).await {
                Ok(()) => {
                    self.succeeded(i);
                    return Ok(());
                }
                Err(e @ SendError::Relay(_)) => {
                    self.failed(i, Instant::now(), &e);
                    last = Some(e);
                }
                Err(e) => {
                    // The relay answered: it is up, whatever it said about this message.
                    self.succeeded(i);
                    return Err(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| SendError::Relay("no relay is configured".into())))
    }

    fn concurrency(&self) -> usize {
        // Each relay limits its own connections; the worker may keep all of them busy.
        self.members
            .iter()
            .map(|m| m.transport.concurrency())
            .sum::<usize>()
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A relay that answers from a switch: up, or down with a relay fault.
    #[derive(Debug, Default)]
    struct Fake {
        down: std::sync::atomic::AtomicBool,
        answer: Mutex<Option<SendError>>,
        sent: AtomicUsize,
    }

    impl Transport for &Fake {
        async fn send(&self, _: &OutgoingMessage) -> Result<(), SendError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(SendError::Relay("connection refused".into()));
            }
            if let Some(e) = self.answer.lock().unwrap().clone() {
                return Err(e);
            }
            self.sent.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn message() -> OutgoingMessage {
        let envelope = lettre::address::Envelope::new(
            Some("a@example.org".parse().unwrap()),
            vec!["b@example.org".parse().unwrap()],
        )
        .unwrap();
        OutgoingMessage::new(envelope, b"x".to_vec())
    }

    fn pool<'a>(relays: &[(&'a Fake, u32, u32)], initial: Duration) -> RelayPool<&'a Fake> {
        RelayPool::new(
            relays
                .iter()
                .enumerate()
                .map(|(i, (f, p, w))| (format!("r{i}"), *f, *p, *w))
                .collect(),
            initial,
            Duration::from_secs(300),
        )
    }

    #[tokio::test]
    async fn equal_priorities_share_by_weight() {
        let (a, b) = (Fake::default(), Fake::default());
        let pool = pool(&[(&a, 0, 2), (&b, 0, 1)], Duration::from_secs(10));
        for _ in 0..30 {
            pool.send(&message()).await.unwrap();
        }
        assert_eq!(a.sent.load(Ordering::SeqCst), 20);
        assert_eq!(b.sent.load(Ordering::SeqCst), 10);
    }

    #[tokio::test]
    async fn a_standby_is_used_only_while_the_first_is_down_and_the_first_comes_back() {
        let (a, b) = (Fake::default(), Fake::default());
        let pool = pool(&[(&a, 0, 1), (&b, 1, 1)], Duration::from_millis(50));
        pool.send(&message()).await.unwrap();
        assert_eq!(
            (a.sent.load(Ordering::SeqCst), b.sent.load(Ordering::SeqCst)),
            (1, 0)
        );

        a.down.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            pool.send(&message()).await.unwrap();
        }
        assert_eq!(
            b.sent.load(Ordering::SeqCst),
            3,
            "the standby took every message"
        );

        a.down.store(false, Ordering::SeqCst);
        // Resting: still the standby until the back-off has passed.
        pool.send(&message()).await.unwrap();
        assert_eq!(b.sent.load(Ordering::SeqCst), 4);
        let until = pool.lock().down_until[0].unwrap();
        while Instant::now() < until {
            tokio::time::sleep(until - Instant::now()).await;
        }
        pool.send(&message()).await.unwrap();
        assert_eq!(
            a.sent.load(Ordering::SeqCst),
            2,
            "the first relay is used again"
        );
    }

    #[tokio::test]
    async fn back_off_doubles_and_every_relay_down_is_a_relay_fault() {
        let (a, b) = (Fake::default(), Fake::default());
        a.down.store(true, Ordering::SeqCst);
        b.down.store(true, Ordering::SeqCst);
        let pool = pool(&[(&a, 0, 1), (&b, 0, 1)], Duration::from_secs(10));
        assert!(matches!(
            pool.send(&message()).await,
            Err(SendError::Relay(_))
        ));
        assert_eq!(pool.lock().next_wait, [Duration::from_secs(20); 2]);
        // Both resting: one try, on the one due soonest, then the fault.
        assert!(matches!(
            pool.send(&message()).await,
            Err(SendError::Relay(_))
        ));
        let waits = pool.lock().next_wait.clone();
        assert!(waits.contains(&Duration::from_secs(40)), "{waits:?}");
    }

    #[tokio::test]
    async fn only_a_relay_fault_moves_a_message_on() {
        let (a, b) = (Fake::default(), Fake::default());
        let pool = pool(&[(&a, 0, 1), (&b, 1, 1)], Duration::from_secs(10));
        for answer in [
            SendError::Unknown("no answer to the final dot".into()),
            SendError::Permanent("550 no such user".into()),
            SendError::Transient("450 mailbox busy".into()),
        ] {
            *a.answer.lock().unwrap() = Some(answer.clone());
            assert_eq!(pool.send(&message()).await, Err(answer));
        }
        assert_eq!(b.sent.load(Ordering::SeqCst), 0, "nothing went twice");
        assert_eq!(
            pool.lock().down_until[0],
            None,
            "a relay that answers is up"
        );
    }
}
