//! The retry schedule (qmail-send(8)): a pass over a channel file that starts at
//! `now` for a message born at `birth` fixes the next pass at
//! `birth + (floor(sqrt(now - birth)) + chanskip)^2`, chanskip 10 for local and 20
//! for remote. The arithmetic is qmail's own, including its 16-step integer square
//! root, so a queue moved between qmail and rqmail is retried at the same moments.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Seconds added to the square root, per channel (local, remote).
pub const CHANSKIP: [i64; 2] = [10, 20];

/// floor(sqrt(x)) for 0 <= x < 2^32, bit by bit as qmail computes it (larger x
/// give 65535, as there).
pub fn squareroot(x: i64) -> i64 {
    let (mut y, mut yy) = (0i64, 0i64);
    for j in (0..=15).rev() {
        let y21 = (y << (j + 1)) + (1i64 << (j + j));
        if y21 <= x - yy {
            y += 1 << j;
            yy += y21;
        }
    }
    y
}

/// When the pass after one starting at `now` is due.
pub fn next_retry(birth: i64, now: i64, channel: usize) -> i64 {
    let n = if birth > now { 0 } else { squareroot(now - birth) };
    let n = n + CHANSKIP[channel];
    birth + n * n
}

/// Message numbers by the time they are due, earliest first (qmail's prioq).
#[derive(Default, Debug)]
pub struct Prioq {
    heap: BinaryHeap<Reverse<(i64, u64)>>,
}

impl Prioq {
    pub fn insert(&mut self, dt: i64, id: u64) {
        self.heap.push(Reverse((dt, id)));
    }

    /// The earliest (time, id), if any.
    pub fn min(&self) -> Option<(i64, u64)> {
        self.heap.peek().map(|r| r.0)
    }

    pub fn pop(&mut self) -> Option<(i64, u64)> {
        self.heap.pop().map(|r| r.0)
    }

    /// The earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: i64) -> Option<u64> {
        match self.min() {
            Some((dt, _)) if dt <= now => self.pop().map(|(_, id)| id),
            _ => None,
        }
    }

    /// SIGALRM: everything is due at `now`.
    pub fn all_due(&mut self, now: i64) {
        let v: Vec<_> = self.heap.drain().map(|Reverse((_, id))| Reverse((now, id))).collect();
        self.heap = v.into();
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squareroot_is_the_floor() {
        for x in 0..200_000i64 {
            let y = squareroot(x);
            assert!(y * y <= x && x < (y + 1) * (y + 1), "{x}");
        }
        for x in [604_800i64, 608_400, (1 << 32) - 1] {
            let y = squareroot(x);
            assert!(y * y <= x && x < (y + 1) * (y + 1), "{x}");
        }
        assert_eq!(squareroot(1 << 40), 65535);
    }

    /// The offsets from birth when every pass runs exactly on time.
    fn schedule(channel: usize, lifetime: i64) -> Vec<i64> {
        let birth = 1_700_000_000;
        let mut t = birth;
        let mut v = vec![0];
        loop {
            let dying = t > birth + lifetime;
            if dying {
                return v;
            }
            t = next_retry(birth, t, channel);
            v.push(t - birth);
        }
    }

    #[test]
    fn retry_schedule_table() {
        let local = schedule(0, 604_800);
        assert_eq!(
            &local[..11],
            &[0, 100, 400, 900, 1600, 2500, 3600, 4900, 6400, 8100, 10000]
        );
        let remote = schedule(1, 604_800);
        assert_eq!(
            &remote[..11],
            &[0, 400, 1600, 3600, 6400, 10000, 14400, 19600, 25600, 32400, 40000]
        );
        // Passes within the lifetime, and the first one after it (the last chance).
        assert_eq!(local.iter().filter(|&&t| t <= 604_800).count(), 78);
        assert_eq!(remote.iter().filter(|&&t| t <= 604_800).count(), 39);
        assert_eq!(*local.last().unwrap(), 608_400);
        assert_eq!(*remote.last().unwrap(), 608_400);
        // A late pass is placed by how late it is: 150 s after birth is n = 12.
        assert_eq!(next_retry(1000, 1150, 0), 1000 + 22 * 22);
        assert_eq!(next_retry(1000, 1150, 1), 1000 + 32 * 32);
        // A birth in the future (clock stepped back) counts as now.
        assert_eq!(next_retry(2000, 1000, 0), 2100);
    }

    #[test]
    fn prioq_orders_by_time() {
        let mut q = Prioq::default();
        q.insert(30, 1);
        q.insert(10, 2);
        q.insert(20, 3);
        assert_eq!(q.pop_due(5), None);
        assert_eq!(q.pop_due(15), Some(2));
        q.all_due(16);
        assert_eq!(q.min(), Some((16, 1)));
        assert_eq!(q.len(), 2);
    }
}
