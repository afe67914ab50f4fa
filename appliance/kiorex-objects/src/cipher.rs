//! Client-side encryption of document objects: the STREAM construction (Hoang, Reyhanitabar,
//! Rogaway, Vizár) over AES-256-GCM, from the `aead` crate (`StreamBE32`). The plaintext is cut
//! into 64 KiB chunks; chunk `i` is sealed with the object's data key, a nonce made of its
//! position and a last-chunk flag, and the object key as associated data. So a chunk cannot be
//! moved, dropped from the end, or copied to another object without failing to open, and any
//! chunk can be opened alone: a Range read fetches and opens only the chunks it needs.
//!
//! Each data key seals exactly one object, so the fixed nonce prefix never repeats under a key.

use crate::keys::DataKey;
use crate::store::ByteStream;
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::stream::{NewStream, StreamBE32, StreamPrimitive};
use aes_gcm::aead::{KeyInit, Payload};
use bytes::Bytes;
use futures_util::StreamExt;
use std::io::{Read, Write};
use std::path::Path;

/// Plaintext bytes per chunk.
pub const CHUNK: u64 = 64 * 1024;
/// The GCM tag added to each chunk.
pub const TAG: u64 = 16;
const SEALED_CHUNK: u64 = CHUNK + TAG;

fn primitive(key: &DataKey) -> StreamBE32<Aes256Gcm> {
    let aead = Aes256Gcm::new(key.bytes().into());
    StreamBE32::from_aead(aead, &Default::default())
}

/// How many chunks a plaintext of `size` bytes has.
pub fn chunks(size: u64) -> u64 {
    size.div_ceil(CHUNK)
}

/// The size of the stored (sealed) object.
pub fn sealed_size(size: u64) -> u64 {
    size + TAG * chunks(size)
}

/// Seals the file at `plain` (of `size` bytes) into `sealed`, chunk by chunk. Blocking.
pub fn seal_file(
    key: &DataKey,
    object_key: &str,
    plain: &Path,
    size: u64,
    sealed: &mut impl Write,
) -> std::io::Result<()> {
    let primitive = primitive(key);
    let mut input = std::fs::File::open(plain)?;
    let total = chunks(size);
    let mut buffer = vec![0u8; CHUNK as usize];
    for position in 0..total {
        let len = CHUNK.min(size - position * CHUNK) as usize;
        input.read_exact(&mut buffer[..len])?;
        let sealed_chunk = primitive
            .encrypt(
                position as u32,
                position + 1 == total,
                Payload {
                    msg: &buffer[..len],
                    aad: object_key.as_bytes(),
                },
            )
            .map_err(|_| std::io::Error::other("sealing a chunk failed"))?;
        sealed.write_all(&sealed_chunk)?;
    }
    sealed.flush()
}

/// What to fetch for the plaintext bytes `first..=last` of a `size`-byte document: the sealed
/// byte range (inclusive) and the first chunk's number.
pub fn sealed_range(first: u64, last: u64, size: u64) -> (u64, u64, u64) {
    let first_chunk = first / CHUNK;
    let last_chunk = last / CHUNK;
    let start = first_chunk * SEALED_CHUNK;
    let end = ((last_chunk + 1) * SEALED_CHUNK).min(sealed_size(size)) - 1;
    (start, end, first_chunk)
}

struct Opening {
    sealed: ByteStream,
    buffer: Vec<u8>,
    primitive: StreamBE32<Aes256Gcm>,
    aad: Vec<u8>,
    position: u64,
    total: u64,
    size: u64,
    skip: usize,
    remaining: u64,
}

/// Opens the sealed bytes of a range fetched as [`sealed_range`] said, yielding exactly the
/// plaintext bytes `first..=last`. A chunk that does not open ends the stream with an error.
pub fn open_stream(
    sealed: ByteStream,
    key: &DataKey,
    object_key: &str,
    first: u64,
    last: u64,
    size: u64,
) -> ByteStream {
    let state = Opening {
        sealed,
        buffer: Vec::with_capacity(SEALED_CHUNK as usize),
        primitive: primitive(key),
        aad: object_key.as_bytes().to_vec(),
        position: first / CHUNK,
        total: chunks(size),
        size,
        skip: (first % CHUNK) as usize,
        remaining: last - first + 1,
    };
    Box::pin(futures_util::stream::unfold(state, |mut s| async move {
        if s.remaining == 0 {
            return None;
        }
        let item = next_chunk(&mut s).await;
        if item.is_err() {
            s.remaining = 0;
        }
        Some((item, s))
    }))
}

async fn next_chunk(s: &mut Opening) -> Result<Bytes, std::io::Error> {
    let plain_len = CHUNK.min(s.size - s.position * CHUNK);
    let needed = (plain_len + TAG) as usize;
    while s.buffer.len() < needed {
        match s.sealed.next().await {
            Some(Ok(bytes)) => s.buffer.extend_from_slice(&bytes),
            Some(Err(e)) => return Err(e),
            None => return Err(std::io::Error::other("the stored object ended early")),
        }
    }
    let rest = s.buffer.split_off(needed);
    let sealed = std::mem::replace(&mut s.buffer, rest);
    let plain = s
        .primitive
        .decrypt(
            s.position as u32,
            s.position + 1 == s.total,
            Payload {
                msg: &sealed,
                aad: &s.aad,
            },
        )
        .map_err(|_| {
            std::io::Error::other(
                "a chunk of the stored object does not open: wrong key or altered object",
            )
        })?;
    s.position += 1;
    let take = (plain.len() - s.skip).min(s.remaining as usize);
    let out = Bytes::copy_from_slice(&plain[s.skip..s.skip + take]);
    s.skip = 0;
    s.remaining -= take as u64;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(key: &DataKey, plain: &[u8], object: &str) -> Vec<u8> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), plain).unwrap();
        let mut out = Vec::new();
        seal_file(key, object, file.path(), plain.len() as u64, &mut out).unwrap();
        out
    }

    fn as_stream(bytes: Vec<u8>, piece: usize) -> ByteStream {
        let pieces: Vec<Result<Bytes, std::io::Error>> = bytes
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures_util::stream::iter(pieces))
    }

    async fn open(
        sealed: &[u8],
        key: &DataKey,
        object: &str,
        first: u64,
        last: u64,
        size: u64,
    ) -> Result<Vec<u8>, String> {
        let (start, end, _) = sealed_range(first, last, size);
        let part = sealed[start as usize..=end as usize].to_vec();
        let mut stream = open_stream(as_stream(part, 1000), key, object, first, last, size);
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            out.extend_from_slice(&item.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn any_range_opens_to_the_same_bytes() {
        let key = DataKey::generate();
        let plain: Vec<u8> = (0..(3 * CHUNK + 100)).map(|i| (i % 251) as u8).collect();
        let size = plain.len() as u64;
        let sealed = sealed(&key, &plain, "o");
        assert_eq!(sealed.len() as u64, sealed_size(size));
        for (first, last) in [
            (0, size - 1),
            (5, 10),
            (CHUNK - 3, CHUNK + 3),
            (size - 1, size - 1),
            (CHUNK, 2 * CHUNK - 1),
        ] {
            let opened = open(&sealed, &key, "o", first, last, size).await.unwrap();
            assert_eq!(
                opened,
                plain[first as usize..=last as usize],
                "{first}-{last}"
            );
        }
    }

    #[tokio::test]
    async fn another_key_another_object_or_a_cut_object_do_not_open() {
        let key = DataKey::generate();
        let plain = vec![7u8; (CHUNK + 10) as usize];
        let size = plain.len() as u64;
        let sealed = sealed(&key, &plain, "o");
        assert!(
            open(&sealed, &DataKey::generate(), "o", 0, size - 1, size)
                .await
                .is_err()
        );
        assert!(
            open(&sealed, &key, "other", 0, size - 1, size)
                .await
                .is_err()
        );
        // Dropping the last chunk and claiming the first is the end: the last-chunk flag differs.
        let cut = sealed[..SEALED_CHUNK as usize].to_vec();
        assert!(open(&cut, &key, "o", 0, CHUNK - 1, CHUNK).await.is_err());
        assert!(
            !sealed.windows(16).any(|w| w == [7u8; 16]),
            "no plaintext in the sealed bytes"
        );
    }
}
