//! An ordered parallel map: items made one by one, worked on by several threads, and handed
//! on in the order they were made. Decoding and encoding returns is what keeps the cores busy;
//! the sink and the checkpoint stay on one thread and see returns in jid order.

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;
use std::thread;

/// Runs `work` on every item of `produce` on `threads` threads and gives the results to
/// `consume` in the items' order. At most `window` items are between `produce` and `consume`
/// at any time, so memory stays bounded whatever the speeds. An error from `consume` stops
/// everything and is returned.
pub(crate) fn ordered<T, U, E>(
    threads: usize,
    window: usize,
    produce: impl Iterator<Item = T> + Send,
    work: impl Fn(T) -> U + Sync,
    mut consume: impl FnMut(U) -> Result<(), E>,
) -> Result<(), E>
where
    T: Send,
    U: Send,
{
    if threads <= 1 {
        // Nothing to share: no threads, no channels (a daemon's passes are mostly one return).
        return produce.map(work).try_for_each(consume);
    }
    let window = window.max(1);
    let (work_tx, work_rx) = sync_channel::<(usize, T)>(window);
    // Shared by the workers: whoever is free takes the next item.
    let work_rx = Mutex::new(work_rx);
    thread::scope(|scope| {
        let (done_tx, done_rx) = sync_channel::<(usize, U)>(window);
        let (token_tx, token_rx) = sync_channel::<()>(window);
        for _ in 0..window {
            token_tx.send(()).expect("the receiver is alive");
        }
        scope.spawn(move || {
            for (seq, item) in produce.enumerate() {
                // A token per item in flight; none left back means the consumer stopped.
                if token_rx.recv().is_err() || work_tx.send((seq, item)).is_err() {
                    return;
                }
            }
        });
        for _ in 0..threads.max(1) {
            let (done_tx, work_rx, work) = (done_tx.clone(), &work_rx, &work);
            scope.spawn(move || loop {
                let next = crate::sync::lock(work_rx).recv();
                let Ok((seq, item)) = next else { return };
                if done_tx.send((seq, work(item))).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        in_order(done_rx, token_tx, &mut consume)
    })
}

/// Hands results on in sequence, returning a token for each; dropping the channels on the way
/// out (also on error) lets every other thread finish.
fn in_order<U, E>(
    done: Receiver<(usize, U)>,
    tokens: SyncSender<()>,
    consume: &mut impl FnMut(U) -> Result<(), E>,
) -> Result<(), E> {
    let mut next = 0;
    let mut held = BTreeMap::new();
    for (seq, out) in done {
        held.insert(seq, out);
        while let Some(out) = held.remove(&next) {
            consume(out)?;
            next += 1;
            let _ = tokens.send(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_order_whatever_the_work_takes() {
        let mut got = Vec::new();
        let r: Result<(), ()> = ordered(
            3,
            4,
            0..200u64,
            |i| {
                // Later items finish first now and then.
                thread::sleep(std::time::Duration::from_micros((200 - i) % 7 * 50));
                i * 2
            },
            |v| {
                got.push(v);
                Ok(())
            },
        );
        assert!(r.is_ok());
        assert_eq!(got, (0..200).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn one_thread_works_in_place() {
        let mut got = Vec::new();
        let r: Result<(), ()> = ordered(
            1,
            4,
            0..5u64,
            |i| i + 1,
            |v| {
                got.push(v);
                Ok(())
            },
        );
        assert!(r.is_ok());
        assert_eq!(got, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn an_error_stops_everything() {
        let mut seen = 0;
        let r = ordered(
            2,
            2,
            0..u64::MAX,
            |i| i,
            |i| {
                seen += 1;
                if i == 10 {
                    Err(i)
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r, Err(10));
        assert_eq!(seen, 11);
    }
}
