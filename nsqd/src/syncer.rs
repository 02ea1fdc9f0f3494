//! The fsyncs and metadata writes of memory mode's disk queues, on one
//! background thread, so that a slow disk never stalls an async worker that
//! holds a topic's or a channel's lock (log mode has its own writer thread).
//!
//! A queue hands over what to make durable: the segment files it wrote and
//! its latest positions. What a queue hands over while its previous batch
//! waits joins that batch, so a queue that syncs often costs one fsync per
//! round, not a backlog. [`SyncSlot::wait`] blocks until a batch is done
//! (shutdown, and callers that must know).

use crate::diskqueue::write_atomically;
use parking_lot::{Condvar, Mutex};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// One disk queue's pending durability work.
pub struct SyncSlot {
    name: String,
    state: Mutex<Batch>,
    finished: Condvar,
    /// True once the queue is deleted: its metadata must not come back.
    /// Held while metadata is written.
    deleted: Mutex<bool>,
}

#[derive(Default)]
struct Batch {
    /// Segment files to fsync, by segment number.
    files: BTreeMap<u64, File>,
    /// The metadata file and its newest content.
    meta: Option<(PathBuf, String)>,
    queued: bool,
    /// Batches handed over, and done.
    submitted: u64,
    done: u64,
    /// The last batch that failed, and why.
    failed: Option<(u64, String)>,
}

impl SyncSlot {
    pub fn new(name: &str) -> Arc<SyncSlot> {
        Arc::new(SyncSlot {
            name: name.to_string(),
            state: Mutex::new(Batch::default()),
            finished: Condvar::new(),
            deleted: Mutex::new(false),
        })
    }

    /// Hands over a segment file (number, handle) to fsync and the
    /// metadata to write after it; returns the batch's number for
    /// [`SyncSlot::wait`]. Never blocks on the disk.
    pub fn submit(self: &Arc<Self>, file: Option<(u64, File)>, meta: (PathBuf, String)) -> u64 {
        let mut batch = self.state.lock();
        if let Some((num, file)) = file {
            batch.files.insert(num, file);
        }
        batch.meta = Some(meta);
        batch.submitted += 1;
        let number = batch.submitted;
        if !std::mem::replace(&mut batch.queued, true) {
            drop(batch);
            if syncer().send(self.clone()).is_err() {
                tracing::error!(queue = %self.name, "the disk sync thread is gone");
            }
        }
        number
    }

    /// Blocks until batch `number` is on disk.
    pub fn wait(&self, number: u64) -> io::Result<()> {
        let mut batch = self.state.lock();
        while batch.done < number {
            self.finished.wait(&mut batch);
        }
        match &batch.failed {
            Some((failed, why)) if *failed >= number => Err(io::Error::other(why.clone())),
            _ => Ok(()),
        }
    }

    /// Blocks until everything handed over so far is on disk.
    pub fn wait_all(&self) -> io::Result<()> {
        let submitted = self.state.lock().submitted;
        self.wait(submitted)
    }

    /// The queue is being deleted: no metadata is written from now on.
    pub fn retire(&self) {
        *self.deleted.lock() = true;
    }

    /// The sync thread's side: fsyncs the files, then writes the metadata.
    fn run(&self) {
        let (files, meta, number) = {
            let mut batch = self.state.lock();
            batch.queued = false;
            (
                std::mem::take(&mut batch.files),
                batch.meta.take(),
                batch.submitted,
            )
        };
        let mut result = files.values().try_for_each(|file| {
            if let Some(delay) = fsync_delay() {
                std::thread::sleep(delay);
            }
            file.sync_data()
        });
        if let (Ok(()), Some((path, text))) = (&result, meta) {
            let deleted = self.deleted.lock();
            if !*deleted {
                // The records are what recovery trusts: a metadata file that
                // cannot be replaced (a full disk) only costs a longer scan.
                if let Err(e) = write_atomically(&path, text.as_bytes()) {
                    tracing::warn!(queue = %self.name, error = %e, "failed to write queue metadata");
                }
            }
        }
        if let Err(e) = &mut result {
            tracing::error!(queue = %self.name, error = %e, "fsync of a disk queue failed");
        }
        let mut batch = self.state.lock();
        batch.done = batch.done.max(number);
        if let Err(e) = result {
            batch.failed = Some((number, e.to_string()));
        }
        drop(batch);
        self.finished.notify_all();
    }
}

fn syncer() -> &'static Sender<Arc<SyncSlot>> {
    static SYNCER: OnceLock<Sender<Arc<SyncSlot>>> = OnceLock::new();
    SYNCER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Arc<SyncSlot>>();
        std::thread::Builder::new()
            .name("nsqd-disk-sync".into())
            .spawn(move || {
                for slot in rx {
                    slot.run();
                }
            })
            .expect("spawn the disk sync thread");
        tx
    })
}

/// The tests' slow disk ([`crate::log::fsync_delay_from_env`]), read once.
fn fsync_delay() -> Option<Duration> {
    static DELAY: OnceLock<Option<Duration>> = OnceLock::new();
    *DELAY.get_or_init(crate::log::fsync_delay_from_env)
}
