//! Which queue a worker that serves several asks first: the decision, as a pure function of
//! what each queue has been given so far, so a table can test it.
//!
//! **Weighted** sharing is stride scheduling: each queue has a *pass*, moved on by
//! `STRIDE / weight` for every job claimed from it, and a claim asks the queues in order of
//! pass (lowest first; ties go to the queue named first). While every queue has jobs, each gets
//! its weight's share of the jobs, within one claim batch of exact at any moment. A queue that
//! had nothing banks no credit: its pass is raised to that of the queues that did have jobs, so
//! it cannot take a burst of more than its share when jobs arrive. A claim that gets fewer
//! jobs than it wants from the first queue goes on to the next, so no slot idles while any
//! queue has work.
//!
//! **Strict** order asks the queues in the order named: a later queue gets a slot only while
//! every earlier one is empty.

/// How a [`Worker`](crate::Worker) that serves several queues shares its slots among them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Share {
    /// Each queue gets jobs in proportion to its weight while every queue has jobs
    /// (`critical=6,default=3,low=1`: 60 %, 30 %, 10 %), and all the slots while the others
    /// are empty.
    Weighted(Vec<u32>),
    /// The first queue named first; the next only while all before it are empty.
    Strict,
}

/// Largest weight [`Worker::weighted`](crate::Worker::weighted) takes.
pub const MAX_WEIGHT: u32 = 1000;

/// The pass a queue of weight 1 moves on by per job: a multiple of every weight up to
/// [`MAX_WEIGHT`] would be exact, this is close enough (errors of 1 in 2^32 per job).
const STRIDE: u64 = 1 << 32;

/// The order state of a worker's queues.
#[derive(Debug)]
pub(super) struct Lanes {
    /// Per queue, how far its pass moves per job; `None` in strict order.
    strides: Option<Vec<u64>>,
    pass: Vec<u64>,
}

impl Lanes {
    /// The state for `n` queues shared by `share` (whose weights, if any, are `n`, each
    /// 1..=[`MAX_WEIGHT`]: checked by the worker's constructor).
    pub(super) fn new(n: usize, share: &Share) -> Self {
        let strides = match share {
            Share::Weighted(weights) => Some(
                weights
                    .iter()
                    .map(|&w| STRIDE / u64::from(w.max(1)))
                    .collect(),
            ),
            Share::Strict => None,
        };
        Lanes {
            strides,
            pass: vec![0; n],
        }
    }

    /// The queues (by index) in the order the next claim asks them.
    pub(super) fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.pass.len()).collect();
        if self.strides.is_some() {
            order.sort_by_key(|&i| (self.pass[i], i));
        }
        order
    }

    /// Records a claim: `given[i]` jobs came from queue `i`, `None` when it was not asked.
    pub(super) fn served(&mut self, given: &[Option<usize>]) {
        let Some(strides) = &self.strides else {
            return;
        };
        // The lowest pass among the queues that had jobs: queues found empty catch up to it.
        let floor = given
            .iter()
            .zip(&self.pass)
            .filter(|(g, _)| g.is_some_and(|n| n > 0))
            .map(|(_, &p)| p)
            .min();
        for (i, g) in given.iter().enumerate() {
            match (g, floor) {
                (Some(0), Some(floor)) => self.pass[i] = self.pass[i].max(floor),
                (Some(n), _) if *n > 0 => {
                    let n = u64::try_from(*n).unwrap_or(u64::MAX);
                    self.pass[i] = self.pass[i].saturating_add(strides[i].saturating_mul(n));
                }
                _ => {}
            }
        }
        // Keep passes small: only their differences matter.
        if let Some(&low) = self.pass.iter().min() {
            for p in &mut self.pass {
                *p -= low;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Claims one job at a time from queues that always have jobs: the shares are the weights.
    #[test]
    fn full_queues_share_by_weight() {
        let mut lanes = Lanes::new(3, &Share::Weighted(vec![6, 3, 1]));
        let mut got = [0usize; 3];
        for _ in 0..1000 {
            let first = lanes.order()[0];
            got[first] += 1;
            let mut given = [None; 3];
            given[first] = Some(1);
            lanes.served(&given);
        }
        assert_eq!(got, [600, 300, 100]);
    }

    /// Batches of several jobs still converge to the weights.
    #[test]
    fn batches_share_by_weight() {
        let mut lanes = Lanes::new(2, &Share::Weighted(vec![3, 1]));
        let mut got = [0usize; 2];
        for round in 0..1000 {
            let first = lanes.order()[0];
            let n = 1 + round % 7;
            got[first] += n;
            let mut given = [None; 2];
            given[first] = Some(n);
            lanes.served(&given);
        }
        let total = (got[0] + got[1]) as f64;
        assert!((got[0] as f64 / total - 0.75).abs() < 0.01, "{got:?}");
    }

    /// One claim of one job, as the worker makes it: asks the queues in order until one that
    /// `has` jobs gives it. Which queue gave it.
    fn claim_one(lanes: &mut Lanes, has: &[bool]) -> Option<usize> {
        let mut given = vec![None; has.len()];
        let mut from = None;
        for i in lanes.order() {
            given[i] = Some(usize::from(has[i]));
            if has[i] {
                from = Some(i);
                break;
            }
        }
        lanes.served(&given);
        from
    }

    /// A queue that was empty for a long time gets its share when it fills, not a burst.
    #[test]
    fn an_empty_queue_banks_no_credit() {
        let mut lanes = Lanes::new(2, &Share::Weighted(vec![1, 1]));
        for _ in 0..100 {
            assert_eq!(claim_one(&mut lanes, &[true, false]), Some(0));
        }
        let mut got = [0usize; 2];
        for _ in 0..10 {
            if let Some(i) = claim_one(&mut lanes, &[true, true]) {
                got[i] += 1;
            }
        }
        assert_eq!(got, [5, 5]);
    }

    /// Strict order always asks in the order named.
    #[test]
    fn strict_asks_in_order() {
        let mut lanes = Lanes::new(3, &Share::Strict);
        lanes.served(&[Some(5), Some(0), None]);
        assert_eq!(lanes.order(), vec![0, 1, 2]);
    }
}
