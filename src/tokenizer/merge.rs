//! Applying BPE merges to one piece: repeatedly join the adjacent pair of
//! lowest rank (the leftmost, when a pair occurs twice) until no adjacent
//! pair is a merge. Short pieces keep the pairs' ranks in a vector and scan
//! it; long ones (a run of one character, a line of base64) use a linked
//! list and a heap, O(n log n) rather than O(n²).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

/// The rank of merging a pair (its line in the merge list) and the token
/// it makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Merge {
    pub rank: u32,
    pub id: u32,
}

/// Pair -> merge, keyed by the two ids packed into one `u64`.
pub(crate) type MergeTable = FxHashMap<u64, Merge>;

#[inline]
pub(crate) fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// Above this many symbols the heap wins over rescanning.
const LONG: usize = 128;

/// Merges `symbols` (token ids, initially one per byte) in place.
pub(crate) fn merge(symbols: &mut Vec<u32>, merges: &MergeTable) {
    if symbols.len() < 2 {
        return;
    }
    if symbols.len() <= LONG {
        merge_short(symbols, merges);
    } else {
        merge_long(symbols, merges);
    }
}

fn merge_short(symbols: &mut Vec<u32>, merges: &MergeTable) {
    let lookup = |s: &[u32], i: usize| merges.get(&pair_key(s[i], s[i + 1])).copied();
    // ranks[i]: the merge of symbols i and i + 1, if any.
    let mut ranks: Vec<Option<Merge>> =
        (0..symbols.len() - 1).map(|i| lookup(symbols, i)).collect();
    loop {
        let best = ranks
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.map(|m| (m.rank, i, m.id)))
            .min();
        let Some((_, i, id)) = best else { break };
        symbols[i] = id;
        symbols.remove(i + 1);
        ranks.remove(i);
        if i < ranks.len() {
            ranks[i] = lookup(symbols, i);
        }
        if i > 0 {
            ranks[i - 1] = lookup(symbols, i - 1);
        }
    }
}

fn merge_long(symbols: &mut Vec<u32>, merges: &MergeTable) {
    const NONE: usize = usize::MAX;
    let n = symbols.len();
    let mut next: Vec<usize> = (1..=n).map(|i| if i == n { NONE } else { i }).collect();
    let mut prev: Vec<usize> = (0..n).map(|i| if i == 0 { NONE } else { i - 1 }).collect();
    let mut alive = vec![true; n];
    // Candidates (rank, left position): the smallest rank first, then the
    // leftmost. Entries go stale when a neighbour merges; they are checked
    // when popped.
    let mut heap = BinaryHeap::with_capacity(n);
    let candidate = |symbols: &[u32], left: usize, right: usize| {
        merges
            .get(&pair_key(symbols[left], symbols[right]))
            .map(|m| Reverse((m.rank, left)))
    };
    heap.extend((0..n - 1).filter_map(|i| candidate(symbols, i, i + 1)));
    while let Some(Reverse((rank, left))) = heap.pop() {
        let right = next[left];
        if !alive[left] || right == NONE {
            continue;
        }
        let Some(m) = merges.get(&pair_key(symbols[left], symbols[right])) else {
            continue;
        };
        if m.rank != rank {
            continue;
        }
        symbols[left] = m.id;
        alive[right] = false;
        next[left] = next[right];
        if next[left] != NONE {
            prev[next[left]] = left;
            heap.extend(candidate(symbols, left, next[left]));
        }
        if prev[left] != NONE {
            heap.extend(candidate(symbols, prev[left], left));
        }
    }
    let mut i = 0;
    symbols.retain(|_| {
        i += 1;
        alive[i - 1]
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Merges over the alphabet 0..4 making ids 4.., each of two earlier ids.
    fn random_merges(rng: &mut ChaCha8Rng, count: u32) -> MergeTable {
        let mut table = MergeTable::default();
        let mut rank = 0;
        while table.len() < count as usize {
            let id = 4 + rank;
            let (a, b) = (rng.gen_range(0..id), rng.gen_range(0..id));
            if let std::collections::hash_map::Entry::Vacant(e) = table.entry(pair_key(a, b)) {
                e.insert(Merge { rank, id });
                rank += 1;
            }
        }
        table
    }

    /// The textbook loop: find the lowest-ranked pair, merge its leftmost
    /// occurrence, repeat.
    fn reference(symbols: &[u32], merges: &MergeTable) -> Vec<u32> {
        let mut s = symbols.to_vec();
        loop {
            let best = (0..s.len().saturating_sub(1))
                .filter_map(|i| {
                    merges
                        .get(&pair_key(s[i], s[i + 1]))
                        .map(|m| (m.rank, i, m.id))
                })
                .min();
            let Some((_, i, id)) = best else { return s };
            s[i] = id;
            s.remove(i + 1);
        }
    }

    #[test]
    fn short_and_long_paths_merge_as_the_textbook_loop() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for trial in 0..300 {
            let merges = random_merges(&mut rng, 40);
            let len = if trial % 3 == 0 {
                rng.gen_range(129..400)
            } else {
                rng.gen_range(0..40)
            };
            let symbols: Vec<u32> = (0..len).map(|_| rng.gen_range(0..4)).collect();
            let expected = reference(&symbols, &merges);
            let mut short = symbols.clone();
            if !short.is_empty() {
                merge_short(&mut short, &merges);
            }
            let mut long = symbols.clone();
            if long.len() >= 2 {
                merge_long(&mut long, &merges);
            }
            assert_eq!(short, expected, "short path, trial {trial}");
            assert_eq!(long, expected, "long path, trial {trial}");
        }
    }

    #[test]
    fn a_long_run_of_one_symbol_merges_quickly() {
        // 0+0 -> 1, 1+1 -> 2, ...: a million symbols in a few doublings.
        let merges: MergeTable = (0..20)
            .map(|i| (pair_key(i, i), Merge { rank: i, id: i + 1 }))
            .collect();
        let mut symbols = vec![0u32; 1 << 20];
        merge(&mut symbols, &merges);
        assert_eq!(symbols, [20]);
    }
}
