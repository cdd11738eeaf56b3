//! One list page, decoded item by item while its body arrives.
//!
//! A watch-cache list (`resourceVersion=0`) ignores `limit` and answers in one
//! page: 15,000 pods are a 32 MB body. `kube::Client::request` holds that body
//! twice (bytes and string) and then every decoded object at once, over 200 MiB
//! for one list. Here the body is read chunk by chunk and handed to a JSON
//! decoder on a blocking thread, which sends each item back as soon as it is
//! decoded; the caller projects and writes it, so memory holds a few chunks and a
//! few objects, whatever the list's size.

use std::io::Read;

use futures::AsyncReadExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::de::{DeserializeOwned, DeserializeSeed, Error as _, IgnoredAny, MapAccess, Visitor};
use tokio::sync::mpsc;

/// Chunks of body read ahead of the decoder.
const CHUNKS_IN_FLIGHT: usize = 8;
/// Decoded items waiting for the caller.
const ITEMS_IN_FLIGHT: usize = 64;
/// Size of one body read.
const CHUNK: usize = 64 * 1024;

/// Sends `req` and calls `each` on every item of the list it returns, in order, as
/// they arrive; returns the page's `continue` token (`None` on the last page).
///
/// An HTTP error is `kube::Error::Api`, a body that breaks off is
/// `kube::Error::ReadEvents`, and a body that is not a list of `K` is
/// `kube::Error::SerdeError`; items decoded before a failure have been passed to
/// `each`.
pub async fn list_page<K>(
    client: &kube::Client,
    req: http::Request<Vec<u8>>,
    mut each: impl FnMut(K),
) -> Result<Option<String>, kube::Error>
where
    K: DeserializeOwned + Send + 'static,
{
    let mut body = client.request_stream(req).await?;
    let (chunk_tx, chunk_rx) = mpsc::channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let (item_tx, mut item_rx) = mpsc::channel::<K>(ITEMS_IN_FLIGHT);
    let decoder = tokio::task::spawn_blocking(move || {
        let reader = std::io::BufReader::with_capacity(
            CHUNK,
            ChannelReader {
                rx: chunk_rx,
                current: Vec::new(),
                pos: 0,
            },
        );
        let mut de = serde_json::Deserializer::from_reader(reader);
        let meta = ListSeed { items: item_tx }.deserialize(&mut de)?;
        de.end()?;
        Ok::<ListMeta, serde_json::Error>(meta)
    });
    // Pump the body into the decoder while taking its items, both in this task, so
    // dropping this future (a timeout) drops the body and the channels, and the
    // decoder thread ends at once. The pump owns the sender: when it ends, however,
    // the decoder sees the end of its input.
    let pump = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = body.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            if chunk_tx.send(buf[..n].to_vec()).await.is_err() {
                // The decoder stopped (bad JSON): its error says why.
                return Ok(());
            }
        }
    };
    let take = async {
        while let Some(item) = item_rx.recv().await {
            each(item);
        }
    };
    let (pumped, ()) = tokio::join!(pump, take);
    let decoded = decoder
        .await
        .map_err(|e| kube::Error::Service(Box::new(e)))?;
    // A broken body first: the decoder then only saw a truncated document.
    pumped.map_err(kube::Error::ReadEvents)?;
    let meta = decoded.map_err(kube::Error::SerdeError)?;
    Ok(meta.continue_.filter(|t| !t.is_empty()))
}

/// A `Read` over the chunks the pump sends; end of input when the pump is done.
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.blocking_recv() {
                Some(c) => {
                    self.current = c;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Decodes a `…List` object: `metadata` kept, each of `items` sent on, the rest skipped.
struct ListSeed<K> {
    items: mpsc::Sender<K>,
}

impl<'de, K: DeserializeOwned> DeserializeSeed<'de> for ListSeed<K> {
    type Value = ListMeta;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<ListMeta, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, K: DeserializeOwned> Visitor<'de> for ListSeed<K> {
    type Value = ListMeta;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Kubernetes list object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListMeta, A::Error> {
        let mut meta = ListMeta::default();
        let mut saw_items = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "metadata" => meta = map.next_value::<Option<ListMeta>>()?.unwrap_or_default(),
                "items" => {
                    map.next_value_seed(ItemsSeed { items: &self.items })?;
                    saw_items = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !saw_items {
            return Err(A::Error::missing_field("items"));
        }
        Ok(meta)
    }
}

/// Decodes `items` (an array, or `null` for none) one element at a time.
struct ItemsSeed<'a, K> {
    items: &'a mpsc::Sender<K>,
}

impl<'de, K: DeserializeOwned> DeserializeSeed<'de> for ItemsSeed<'_, K> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, K: DeserializeOwned> Visitor<'de> for ItemsSeed<'_, K> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of objects")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<K>()? {
            self.items
                .blocking_send(item)
                .map_err(|_| A::Error::custom("the list's reader stopped"))?;
        }
        Ok(())
    }
}
