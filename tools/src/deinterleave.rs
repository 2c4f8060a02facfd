//! De-interleaving ("corner turning"): an interleaved buffer holds frames
//! of one sample per channel (docs/FORMAT.md, "Channel layouts"); export
//! wants each channel's samples contiguous. [`Deinterleaver::split`] is a
//! blocked transpose into per-channel buffers allocated once: it walks the
//! payload in blocks of frames small enough to stay in L1, and for each
//! channel copies that channel's samples of the block in one sequential
//! run, so every output is written sequentially and the input block is
//! read from cache N times instead of from memory. Sample sizes SigMF
//! defines (1, 2, 4, 8, 16 bytes) get a copy loop of fixed-size moves.

/// Bytes of frames transposed per block: well inside a 32 KiB L1 data
/// cache together with the N output runs it feeds.
const BLOCK_BYTES: usize = 8 << 10;

pub struct Deinterleaver {
    channels: usize,
    sample_bytes: usize,
    /// Channel `c`'s samples of the last split buffer, contiguous.
    outputs: Vec<Vec<u8>>,
    /// Bytes of each output the last split filled.
    filled_bytes: usize,
}

impl Deinterleaver {
    /// For buffers of at most `max_payload_bytes` holding frames of
    /// `channels` samples of `sample_bytes` each. Allocates every output
    /// once, here.
    pub fn new(channels: usize, sample_bytes: usize, max_payload_bytes: usize) -> Deinterleaver {
        assert!(channels >= 1 && sample_bytes >= 1);
        let per_channel = max_payload_bytes / (channels * sample_bytes) * sample_bytes;
        Deinterleaver {
            channels,
            sample_bytes,
            outputs: (0..channels).map(|_| vec![0u8; per_channel]).collect(),
            filled_bytes: 0,
        }
    }

    pub fn frame_bytes(&self) -> usize {
        self.channels * self.sample_bytes
    }

    /// Splits `payload` (whole frames, at most the size given to `new`);
    /// [`Self::channel`] then returns each channel's samples.
    pub fn split(&mut self, payload: &[u8]) {
        let frame = self.frame_bytes();
        assert!(
            payload.len().is_multiple_of(frame),
            "{} bytes are not whole frames of {frame} bytes",
            payload.len()
        );
        let per_channel = payload.len() / frame * self.sample_bytes;
        assert!(
            per_channel <= self.outputs[0].len(),
            "payload larger than the deinterleaver was made for"
        );
        match self.sample_bytes {
            1 => self.transpose::<1>(payload),
            2 => self.transpose::<2>(payload),
            4 => self.transpose::<4>(payload),
            8 => self.transpose::<8>(payload),
            16 => self.transpose::<16>(payload),
            _ => self.transpose_any(payload),
        }
        self.filled_bytes = per_channel;
    }

    /// Channel `channel`'s samples of the last split payload, contiguous.
    pub fn channel(&self, channel: usize) -> &[u8] {
        &self.outputs[channel][..self.filled_bytes]
    }

    /// The blocked transpose for samples of `S` bytes.
    fn transpose<const S: usize>(&mut self, payload: &[u8]) {
        let frame = self.channels * S;
        let frames_per_block = (BLOCK_BYTES / frame).max(1);
        // Bounded: one turn per block of the payload.
        for (block_index, block) in payload.chunks(frames_per_block * frame).enumerate() {
            let first_sample = block_index * frames_per_block;
            for (channel, out) in self.outputs.iter_mut().enumerate() {
                let frames = block.len() / frame;
                let dst = &mut out[first_sample * S..(first_sample + frames) * S];
                let at = channel * S;
                for (d, f) in dst.chunks_exact_mut(S).zip(block.chunks_exact(frame)) {
                    d.copy_from_slice(&f[at..at + S]);
                }
            }
        }
    }

    /// Any other sample size (not a SigMF datatype today): same order,
    /// copies of runtime length.
    fn transpose_any(&mut self, payload: &[u8]) {
        let s = self.sample_bytes;
        let frame = self.frame_bytes();
        for (channel, out) in self.outputs.iter_mut().enumerate() {
            for (k, f) in payload.chunks_exact(frame).enumerate() {
                out[k * s..(k + 1) * s].copy_from_slice(&f[channel * s..(channel + 1) * s]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, sample by sample: sample k of channel c is at byte
    /// k × frame + c × sample_bytes.
    fn reference(payload: &[u8], channels: usize, sample_bytes: usize) -> Vec<Vec<u8>> {
        let frame = channels * sample_bytes;
        (0..channels)
            .map(|c| {
                payload
                    .chunks_exact(frame)
                    .flat_map(|f| f[c * sample_bytes..(c + 1) * sample_bytes].to_vec())
                    .collect()
            })
            .collect()
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9) >> 7) as u8)
            .collect()
    }

    #[test]
    fn matches_the_definition_for_every_sigmf_sample_size_and_channel_count() {
        for sample_bytes in [1, 2, 3, 4, 8, 16] {
            for channels in [1, 2, 3, 4, 5, 8, 17, 32] {
                let frame = channels * sample_bytes;
                // Several blocks plus a partial one.
                let max = (BLOCK_BYTES * 3 + 5 * frame) / frame * frame;
                let mut d = Deinterleaver::new(channels, sample_bytes, max + frame - 1);
                for len in [frame, max / 2 / frame * frame, max] {
                    let p = payload(len);
                    d.split(&p);
                    let want = reference(&p, channels, sample_bytes);
                    for (c, want) in want.iter().enumerate() {
                        assert_eq!(
                            d.channel(c),
                            &want[..],
                            "{channels} channels x {sample_bytes} bytes, {len} bytes, channel {c}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_smaller_buffer_after_a_larger_one_returns_only_its_samples() {
        let mut d = Deinterleaver::new(2, 4, 4096);
        d.split(&payload(4096));
        let small = payload(16);
        d.split(&small);
        let want: Vec<u8> = small[0..4].iter().chain(&small[8..12]).copied().collect();
        assert_eq!(d.channel(0), &want[..]);
        assert_eq!(d.channel(1), &[&small[4..8], &small[12..16]].concat()[..]);
    }

    #[test]
    #[should_panic(expected = "not whole frames")]
    fn a_partial_frame_is_refused() {
        Deinterleaver::new(3, 4, 4096).split(&payload(4096));
    }
}
