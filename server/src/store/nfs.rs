//! The NFS lookup-cache check for directory stores. An NFS client mounted with the default
//! `lookupcache=all` remembers "no such file" for up to `acdirmax` (30–60 s): a renewing master
//! could miss the next epoch's claim that long, and keep acting beside the new master. So a
//! directory store on such a mount is refused unless the operator accepts the risk explicitly;
//! `lookupcache=positive` (shown as `pos`) or `none` is safe.

use std::path::{Path, PathBuf};

/// One line of `/proc/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    point: PathBuf,
    fs_type: String,
    options: Vec<String>,
}

/// `/proc/mounts` escapes space, tab, newline and backslash in paths as octal (`\040`).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4);
        match code.and_then(|digits| u8::from_str_radix(digits, 8).ok()) {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let point = PathBuf::from(unescape(fields.next()?));
            let fs_type = fields.next()?.to_owned();
            let options = fields.next()?.split(',').map(str::to_owned).collect();
            Some(Mount {
                point,
                fs_type,
                options,
            })
        })
        .collect()
}

/// What is wrong with keeping a store at `dir` (an absolute, resolved path), given the text of
/// `/proc/mounts`: `None` when it is not on NFS or its lookup cache is safe.
pub fn lookup_cache_problem(mounts: &str, dir: &Path) -> Option<String> {
    // The mount that holds `dir` is the last listed one whose mount point is its longest prefix.
    let mount = parse_mounts(mounts)
        .into_iter()
        .filter(|mount| dir.starts_with(&mount.point))
        .fold(None::<Mount>, |best, mount| match best {
            Some(best) if best.point.as_os_str().len() > mount.point.as_os_str().len() => {
                Some(best)
            }
            _ => Some(mount),
        })?;
    if !mount.fs_type.starts_with("nfs") {
        return None;
    }
    let cache = mount
        .options
        .iter()
        .find_map(|option| option.strip_prefix("lookupcache="))
        .unwrap_or("all");
    if matches!(cache, "none" | "pos" | "positive") {
        return None;
    }
    Some(format!(
        "{} is on the NFS mount {} with lookupcache={cache}: the client may hide a new master claim for up to a minute, so two nodes could act as master. Remount with -o lookupcache=positive (or none), or pass --accept-nfs-lookup-cache-risk",
        dir.display(),
        mount.point.display()
    ))
}

/// Checks the directory store at `dir` against this machine's `/proc/mounts` (a machine without
/// one, or a directory that cannot be resolved yet, passes: the store's own open reports that).
pub fn check_directory_store(dir: &Path) -> Result<(), String> {
    let Ok(resolved) = std::fs::canonicalize(dir) else {
        return Ok(());
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return Ok(());
    };
    lookup_cache_problem(&mounts, &resolved).map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
/dev/sda1 / ext4 rw,relatime 0 0
server:/export /mnt/ha nfs4 rw,relatime,vers=4.2,rsize=1048576,hard,proto=tcp,timeo=600 0 0
server:/safe /mnt/safe nfs rw,relatime,vers=3,lookupcache=pos,hard 0 0
server:/none /mnt/none nfs4 rw,vers=4.1,lookupcache=none 0 0
server:/all /mnt/all nfs4 rw,vers=4.1,lookupcache=all 0 0
/dev/sdb1 /mnt/ha/local ext4 rw 0 0
server:/sp /mnt/with\\040space nfs4 rw,vers=4.2 0 0
";

    fn problem(dir: &str) -> Option<String> {
        lookup_cache_problem(MOUNTS, Path::new(dir))
    }

    #[test]
    fn nfs_with_the_default_lookup_cache_is_refused_naming_mount_and_option() {
        let message = problem("/mnt/ha/plane").expect("refused");
        assert!(message.contains("/mnt/ha"), "{message}");
        assert!(message.contains("lookupcache=all"), "{message}");
        assert!(message.contains("lookupcache=positive"), "{message}");
        assert!(problem("/mnt/all/x").is_some(), "explicit all");
        assert!(
            problem("/mnt/with space/store").is_some(),
            "escaped mount points"
        );
    }

    #[test]
    fn safe_lookup_caches_and_other_filesystems_pass() {
        assert_eq!(problem("/mnt/safe/plane"), None);
        assert_eq!(problem("/mnt/none/plane"), None);
        assert_eq!(problem("/var/lib/haplane"), None);
        assert_eq!(
            problem("/mnt/ha/local/plane"),
            None,
            "the innermost mount decides"
        );
        assert_eq!(problem("/mnt/hat"), None, "a prefix of a name is no parent");
    }
}
