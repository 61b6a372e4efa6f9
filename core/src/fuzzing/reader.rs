//! A small reader that turns fuzzer bytes into choices.

/// Reads choices from a byte string; once the bytes run out every read answers 0, so
/// any input decodes to some bounded drive.
#[derive(Clone, Debug)]
pub(crate) struct ByteReader<'a> {
    data: &'a [u8],
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        ByteReader { data }
    }

    /// Decodes steps with `decode` until the bytes run out, at most `max_steps` of them.
    pub(crate) fn steps<T>(
        &mut self,
        max_steps: usize,
        mut decode: impl FnMut(&mut Self) -> T,
    ) -> Vec<T> {
        let mut steps = Vec::new();
        while !self.is_empty() && steps.len() < max_steps {
            steps.push(decode(self));
        }
        steps
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&first, rest)) => {
                self.data = rest;
                first
            }
            None => 0,
        }
    }

    pub(crate) fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Little-endian, from `N` bytes (fewer when the input runs out).
    fn uint<const N: usize>(&mut self) -> u64 {
        (0..N).fold(0u64, |value, shift| {
            value | (u64::from(self.u8()) << (8 * shift))
        })
    }

    pub(crate) fn u64(&mut self) -> u64 {
        self.uint::<8>()
    }

    /// A number in `0..bound` (0 when `bound` is 0), from as few bytes as the bound
    /// needs, so that a mutation of one byte changes one choice.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        let raw = match bound {
            0 | 1 => return 0,
            2..=0x100 => u64::from(self.u8()),
            0x101..=0x1_0000 => self.uint::<2>(),
            0x1_0001..=0x1_0000_0000 => self.uint::<4>(),
            _ => self.u64(),
        };
        raw % bound
    }

    /// [`ByteReader::below`] for lengths and indices.
    pub(crate) fn index(&mut self, bound: usize) -> usize {
        // usize fits in u64 on every supported target, and the result is below `bound`.
        self.below(bound as u64) as usize
    }

    /// A number in `low..high` (`low` when the range is empty).
    pub(crate) fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high.saturating_sub(low))
    }

    /// Up to `len` bytes, fewer when the input runs out.
    pub(crate) fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        taken
    }

    /// Picks one of `choices` by weight; `choices` must not be all zero.
    pub(crate) fn weighted<T: Copy>(&mut self, choices: &[(u32, T)]) -> T {
        let total: u32 = choices.iter().map(|(weight, _)| weight).sum();
        let mut pick = self.below(u64::from(total)) as u32;
        for &(weight, choice) in choices {
            if pick < weight {
                return choice;
            }
            pick -= weight;
        }
        choices.last().expect("choices are not empty").1
    }
}

#[cfg(test)]
mod tests {
    use super::ByteReader;

    #[test]
    fn an_exhausted_reader_answers_zero() {
        let mut reader = ByteReader::new(&[7]);
        assert_eq!(reader.u8(), 7);
        assert!(reader.is_empty());
        assert_eq!((reader.u8(), reader.u64(), reader.below(9)), (0, 0, 0));
        assert_eq!(reader.bytes(4), &[] as &[u8]);
    }

    #[test]
    fn choices_stay_within_their_bounds() {
        let data: Vec<u8> = (0..=255).collect();
        let mut reader = ByteReader::new(&data);
        for bound in [2, 3, 255, 256, 257, 70_000, u64::MAX] {
            assert!(reader.below(bound) < bound);
        }
        assert!((10..20).contains(&reader.range(10, 20)));
        assert_eq!(reader.range(5, 5), 5);
        let picked = reader.weighted(&[(0, 'a'), (3, 'b'), (1, 'c')]);
        assert!(picked == 'b' || picked == 'c');
    }

    #[test]
    fn numbers_are_little_endian() {
        let mut reader = ByteReader::new(&[0x34, 0x12, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(reader.u64(), 0x1234);
        assert_eq!(reader.bytes(5), &[1]);
    }
}
