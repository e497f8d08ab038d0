//! Who is connecting, and what they may do: Nix's `trusted-users` and
//! `allowed-users` semantics (user names, `@group`, `*`), applied to the
//! peer's credentials (SO_PEERCRED).

use std::ffi::CStr;

/// The connecting user, as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub user: Option<String>,
    /// names of the user's groups (primary and supplementary)
    pub groups: Vec<String>,
}

/// What a connection may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Trusted,
    Allowed,
    Refused,
}

/// Whether `peer` matches a nix.conf user list (`name`, `@group`, `*`).
pub fn matches(list: &[String], peer: &Peer) -> bool {
    list.iter().any(|e| {
        if e == "*" {
            true
        } else if let Some(g) = e.strip_prefix('@') {
            peer.groups.iter().any(|pg| pg == g)
        } else {
            peer.user.as_deref() == Some(e.as_str())
        }
    })
}

pub fn access(peer: &Peer, trusted_users: &[String], allowed_users: &[String]) -> Access {
    if matches(trusted_users, peer) {
        Access::Trusted
    } else if matches(allowed_users, peer) {
        Access::Allowed
    } else {
        Access::Refused
    }
}

fn user_name(uid: u32) -> Option<(String, u32)> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; result points into pwd/buf
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    let name = unsafe { CStr::from_ptr(pwd.pw_name) }.to_string_lossy().into_owned();
    Some((name, pwd.pw_gid))
}

fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as above
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some(unsafe { CStr::from_ptr(grp.gr_name) }.to_string_lossy().into_owned())
}

fn group_ids(user: &str, primary: u32) -> Vec<u32> {
    let Ok(cuser) = std::ffi::CString::new(user) else { return vec![primary] };
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        // SAFETY: groups has room for n entries; n is updated on overflow
        let rc = unsafe { libc::getgrouplist(cuser.as_ptr(), primary, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n as usize);
            return groups;
        }
        if n > 65536 {
            return vec![primary];
        }
        n *= 2;
    }
}

/// The peer with uid `uid` and primary gid `gid`, names resolved.
pub fn resolve_peer(uid: u32, gid: u32) -> Peer {
    let (user, groups) = match user_name(uid) {
        Some((name, pw_gid)) => {
            let mut ids = group_ids(&name, pw_gid);
            ids.push(gid);
            ids.sort();
            ids.dedup();
            (Some(name), ids.into_iter().filter_map(group_name).collect())
        }
        None => (None, group_name(gid).into_iter().collect()),
    };
    Peer { uid, gid, user, groups }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(user: &str, groups: &[&str]) -> Peer {
        Peer { uid: 1000, gid: 1000, user: Some(user.into()), groups: groups.iter().map(|g| g.to_string()).collect() }
    }

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nix_conf_user_lists() {
        let alice = peer("alice", &["users", "wheel"]);
        assert_eq!(access(&alice, &list(&["root"]), &list(&["*"])), Access::Allowed);
        assert_eq!(access(&alice, &list(&["root", "@wheel"]), &list(&["*"])), Access::Trusted);
        assert_eq!(access(&alice, &list(&["alice"]), &list(&[])), Access::Trusted);
        assert_eq!(access(&alice, &list(&["root"]), &list(&["@nixbld", "bob"])), Access::Refused);
        assert_eq!(access(&alice, &list(&["root"]), &list(&["@users"])), Access::Allowed);
    }

    #[test]
    fn root_resolves() {
        let p = resolve_peer(0, 0);
        assert_eq!(p.user.as_deref(), Some("root"));
        assert!(p.groups.iter().any(|g| g == "root"));
    }
}
