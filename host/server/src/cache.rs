//! The simulator's prefix cache, as serving engines keep one (vLLM's automatic prefix caching):
//! the prompt is cut into blocks of a fixed number of tokens, each full block is named by a
//! hash of itself and every block before it (so a block matches only behind the same prefix),
//! and the cache holds a bounded number of blocks, evicting the least recently used. A request's
//! cached tokens are its leading blocks already in the cache; its other full blocks are added.
//!
//! Token ids are used as they came; a text prompt is cut into pseudo-tokens of four characters
//! (the simulator's count of prompt tokens), so equal texts share blocks exactly as equal
//! token sequences do.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

/// A bounded prefix cache of token blocks.
pub struct PrefixCache {
    block: usize,
    /// Most blocks held (the map grows to it as blocks come, never allocated up front).
    capacity: usize,
    blocks: Mutex<LruCache<u64, ()>>,
}

impl PrefixCache {
    /// A cache of `capacity_tokens` tokens in blocks of `block_tokens`; `None` when either is 0.
    pub fn new(capacity_tokens: usize, block_tokens: usize) -> Option<PrefixCache> {
        let capacity = NonZeroUsize::new(capacity_tokens / block_tokens.max(1))?.get();
        (block_tokens > 0).then(|| PrefixCache {
            block: block_tokens,
            capacity,
            blocks: Mutex::new(LruCache::unbounded()),
        })
    }

    /// The cached tokens of a prompt of `tokens`, whose full blocks are then cached.
    pub fn serve<T: Hash>(&self, tokens: &[T]) -> u64 {
        let Ok(mut cache) = self.blocks.lock() else {
            return 0;
        };
        let mut prefix = DefaultHasher::new();
        let mut cached = 0u64;
        let mut matching = true;
        for block in tokens.chunks_exact(self.block) {
            block.hash(&mut prefix);
            let id = prefix.finish();
            if matching && cache.get(&id).is_some() {
                cached += self.block as u64;
            } else {
                matching = false;
                cache.put(id, ());
                if cache.len() > self.capacity {
                    cache.pop_lru();
                }
            }
        }
        cached
    }
}

/// A text's pseudo-tokens: four characters each (the last may be shorter).
pub fn text_tokens(text: &str) -> Vec<[char; 4]> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(4)
        .map(|c| {
            let mut t = ['\0'; 4];
            t[..c.len()].copy_from_slice(c);
            t
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_prefixes_hit_whole_blocks_and_divergence_stops_the_match() {
        let cache = PrefixCache::new(1024, 4).expect("cache");
        let a: Vec<u32> = (0..10).collect();
        assert_eq!(cache.serve(&a), 0, "cold");
        assert_eq!(
            cache.serve(&a),
            8,
            "two full blocks; the partial third is never cached"
        );
        let mut b = a.clone();
        b[5] = 99;
        assert_eq!(cache.serve(&b), 4, "the second block differs");
        // A block equal to a cached one behind another prefix does not match.
        let c: Vec<u32> = [vec![7, 7, 7, 7], a[4..8].to_vec()].concat();
        assert_eq!(cache.serve(&c), 0);
        assert!(PrefixCache::new(0, 16).is_none());
    }

    #[test]
    fn the_least_recently_used_blocks_go_first() {
        let cache = PrefixCache::new(8, 4).expect("two blocks");
        let a = [1u32, 1, 1, 1];
        let b = [2u32, 2, 2, 2];
        let c = [3u32, 3, 3, 3];
        cache.serve(&a);
        cache.serve(&b);
        assert_eq!(cache.serve(&a), 4, "a is used again");
        cache.serve(&c); // evicts b
        assert_eq!(cache.serve(&a), 4);
        assert_eq!(cache.serve(&b), 0);
    }

    #[test]
    fn text_is_cut_into_four_character_tokens() {
        assert_eq!(text_tokens("abcdefghi").len(), 3);
        assert_eq!(text_tokens("").len(), 0);
    }
}
