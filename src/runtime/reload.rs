//! Hot reload of the rule directory. A mounted ConfigMap is updated by swapping its `..data`
//! symlink; inotify (the `notify` crate) reports that at once. Because inotify can miss
//! changes behind symlinked directories or when watches run out, the daemon also compares
//! a fingerprint of the files' contents every tick, so a change is always picked up within
//! one CHECK_INTERVAL.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::rules::load::rule_files;

/// Watches `dir`; every change sends one (coalesced) message.
pub fn watch(dir: &Path) -> notify::Result<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    let (tx, rx) = mpsc::channel(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| is_change(&e)) {
            // Full means a reload is already queued: that one will see this change too.
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok((watcher, rx))
}

/// Whether an event may change the rules. The daemon's own reads of the files (open,
/// close) are reported as access events: reacting to them would loop, re-reading the
/// files forever and starving the evaluation loop.
fn is_change(event: &notify::Event) -> bool {
    matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
    )
}

/// A fingerprint of the rule files' names and contents (following symlinks).
pub fn fingerprint(dir: &Path) -> u64 {
    let mut hasher = DefaultHasher::new();
    let files = rule_files(&[PathBuf::from(dir)]).unwrap_or_default();
    for file in files {
        file.hash(&mut hasher);
        std::fs::read(&file).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
    use notify::{Event, EventKind};

    #[test]
    fn reads_are_not_changes_but_writes_and_symlink_swaps_are() {
        let read = Event::new(EventKind::Access(AccessKind::Open(AccessMode::Read)));
        let closed = Event::new(EventKind::Access(AccessKind::Close(AccessMode::Read)));
        assert!(!super::is_change(&read) && !super::is_change(&closed));
        let swap = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::To)));
        let created = Event::new(EventKind::Create(CreateKind::File));
        assert!(super::is_change(&swap) && super::is_change(&created));
    }
}
