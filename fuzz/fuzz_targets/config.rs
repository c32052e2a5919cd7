//! Fuzz target `config`: the command-line parsers of `iscsi-target` (`scst_examples::spec`:
//! `LunSpec::parse`, `parse_size`, `parse_group`, `parse_port_group`) and the initiator name
//! patterns of `scst::acl` (`NamePatterns::parse`/`admits`, `glob`). None may panic; what they
//! accept must survive formatting and parsing again unchanged; `glob` and `admits` must agree
//! with a straightforward reference matcher. Nothing is opened: `LunSpec::build` is never
//! called.
//!
//! Also `scst_examples::scstconf::parse` (scst.conf files): no panic; an error's position is
//! inside the text; an accepted file maps only devices it defines.
//!
//! Input: byte 0 picks the parser (modulo 7: LUN spec, size, security group, port group, name
//! patterns, glob, scst.conf); the rest is its argument (as UTF-8, invalid sequences replaced). For name
//! patterns the argument is `LIST\nNAME`; for glob the raw bytes `PATTERN\0NAME`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scst::acl::{NamePatterns, glob};
use scst::alua::{AluaState, PortGroup};
use scst_examples::spec::{Backend, LunSpec, parse_group, parse_port_group, parse_size};

/// Longest pattern and name handed to the reference matcher (it is quadratic).
const MAX_GLOB: usize = 512;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match sel % 7 {
        0 => lun_spec(&text),
        1 => size(&text),
        2 => group(&text),
        3 => port_group(&text),
        4 => patterns(&text),
        5 => glob_bytes(rest),
        _ => scst_conf(&text),
    }
});

fn scst_conf(s: &str) {
    match scst_examples::scstconf::parse("f", s) {
        Ok(c) => {
            for t in &c.targets {
                for l in t.luns.iter().chain(t.groups.iter().flat_map(|g| &g.luns)) {
                    assert!(c.devices.iter().any(|d| d.name == l.device), "LUN {} maps undefined {:?}", l.lun, l.device);
                    assert!(l.lun <= scst::Lun::MAX);
                }
            }
        }
        Err(e) => {
            let lines = s.split('\n').count() as u32;
            assert!(e.pos.line <= lines.max(1), "error at line {} of {lines}: {e}", e.pos.line);
        }
    }
}

fn lun_spec(s: &str) {
    let Ok(spec) = LunSpec::parse(s) else { return };
    assert!(spec.lun <= scst::Lun::MAX);
    assert!(matches!(spec.block_size, 512 | 4096), "block size {}", spec.block_size);
    match &spec.backend {
        Backend::Ram { size } | Backend::Nullio { size } => assert!(*size > 0),
        Backend::Fileio { path, size, .. } => {
            assert!(!path.as_os_str().is_empty());
            assert!(size.is_none_or(|s| s > 0));
        }
        Backend::Blockio { path, .. } => {
            assert!(!path.as_os_str().is_empty());
            assert_eq!(spec.block_size, 512, "blockio takes its block size from the device");
        }
        Backend::Sg { path, timeout, long_timeout, threads, .. } => {
            assert!(!path.as_os_str().is_empty());
            assert!(*timeout > 0 && *long_timeout > 0 && *threads > 0, "{spec:?}");
        }
        Backend::Rbd { pool, image, .. } => {
            assert!(!pool.is_empty() && !image.is_empty() && !image.contains('/'), "{spec:?}");
        }
    }
    let again = format_spec(&spec);
    assert_eq!(LunSpec::parse(&again), Ok(spec.clone()), "{s:?} formatted as {again:?}");
    let (_, body) = again.split_once('=').expect("N=SPEC");
    assert_eq!(LunSpec::parse_spec(spec.lun, body), Ok(spec));
}

/// `N=SPEC` for a parsed spec (what `LunSpec::parse` must read back as the same spec).
fn format_spec(s: &LunSpec) -> String {
    let mut opts: Vec<String> = Vec::new();
    let head = match &s.backend {
        Backend::Rbd { pool, image, conf, id } => {
            if let Some(c) = conf {
                opts.push(format!("conf={}", c.to_str().expect("parsed from a str")));
            }
            if let Some(i) = id {
                opts.push(format!("id={i}"));
            }
            opts.push(format!("bs={}", s.block_size));
            format!("rbd:{pool}/{image}")
        }
        Backend::Ram { size } => {
            opts.push(format!("bs={}", s.block_size));
            format!("ram:{size}")
        }
        Backend::Nullio { size } => {
            opts.push(format!("bs={}", s.block_size));
            format!("nullio:{size}")
        }
        Backend::Fileio { path, size, thin, write_through, direct, physical_block_size, zerocopy, aio } => {
            push_aio(&mut opts, *aio);
            if !zerocopy {
                opts.push("zerocopy=off".into());
            }
            if let Some(z) = size {
                opts.push(format!("size={z}"));
            }
            for (on, name) in [(*thin, "thin"), (*write_through, "wt"), (*direct, "direct")] {
                if on {
                    opts.push(name.into());
                }
            }
            opts.push(format!("bs={}", s.block_size));
            if *physical_block_size != 0 {
                opts.push(format!("pbs={physical_block_size}"));
            }
            format!("fileio:{}", path.to_str().expect("parsed from a str"))
        }
        Backend::Blockio { path, thin, aio } => {
            push_aio(&mut opts, *aio);
            if *thin {
                opts.push("thin".into());
            }
            format!("blockio:{}", path.to_str().expect("parsed from a str"))
        }
        Backend::Sg { path, timeout, long_timeout, forward_reservations, threads } => {
            opts.push(format!("timeout={timeout}"));
            opts.push(format!("long_timeout={long_timeout}"));
            opts.push(format!("pr={}", if *forward_reservations { "passthrough" } else { "emulate" }));
            opts.push(format!("threads={threads}"));
            format!("sg:{}", path.to_str().expect("parsed from a str"))
        }
    };
    if s.read_only {
        opts.push("ro".into());
    }
    if s.removable {
        opts.push("removable".into());
    }
    if let Some(r) = s.sanitize_rate {
        opts.push(format!("sanitize_rate={r}"));
    }
    for (g, ro) in &s.groups {
        opts.push(if *ro { format!("group={g}:ro") } else { format!("group={g}") });
    }
    let mut out = format!("{}={head}", s.lun);
    for o in opts {
        out.push(',');
        out.push_str(&o);
    }
    out
}

fn size(s: &str) {
    let Ok(n) = parse_size(s) else { return };
    assert!(n > 0);
    assert_eq!(parse_size(&n.to_string()), Ok(n));
    if let Some(c) = s.chars().last().filter(char::is_ascii_alphabetic) {
        let unit = match c.to_ascii_uppercase() {
            'K' => 1u64 << 10,
            'M' => 1 << 20,
            'G' => 1 << 30,
            _ => 1 << 40,
        };
        assert_eq!(n % unit, 0);
        assert_eq!(parse_size(&format!("{}{c}", n / unit)), Ok(n));
    } else {
        assert_eq!(s.parse::<u64>().ok(), Some(n), "a plain number parses as itself");
    }
}

fn group(s: &str) {
    let Ok((name, pats)) = parse_group(s) else { return };
    assert!(!name.is_empty() && !name.contains(char::is_whitespace));
    assert!(!pats.is_empty());
    let again = format!("{name}:{pats}");
    assert_eq!(parse_group(&again), Ok((name, pats)), "{s:?} formatted as {again:?}");
}

fn state_name(s: AluaState) -> &'static str {
    match s {
        AluaState::ActiveOptimized => "active",
        AluaState::ActiveNonOptimized => "nonoptimized",
        AluaState::Standby => "standby",
        AluaState::Unavailable => "unavailable",
        AluaState::Offline => "offline",
        AluaState::Transitioning => "transitioning",
    }
}

fn port_group(s: &str) {
    let Ok(g) = parse_port_group(s) else { return };
    assert_ne!(g.id, 0);
    assert!(g.remote_ports.iter().all(|&p| p != 0));
    let mut again = format!("{}={}", g.id, state_name(g.state));
    if g.preferred {
        again.push_str(",pref");
    }
    if !g.remote_ports.is_empty() {
        let list: Vec<String> = g.remote_ports.iter().map(u16::to_string).collect();
        again.push_str(&format!(",remote={}", list.join("+")));
    }
    let back: PortGroup = parse_port_group(&again).expect("a formatted port group parses");
    assert_eq!(back, g, "{s:?} formatted as {again:?}");
}

fn patterns(s: &str) {
    let (list, name) = s.split_once('\n').unwrap_or((s, ""));
    let Ok(p) = NamePatterns::parse(list) else { return };
    assert!(!p.is_empty());
    for pat in p.patterns() {
        let body = pat.strip_prefix('!').unwrap_or(pat);
        assert!(!body.is_empty() && body.bytes().all(|b| b.is_ascii_graphic() && b != b',' && !b.is_ascii_uppercase()));
    }
    assert_eq!(NamePatterns::parse(&p.to_string()), Ok(p.clone()), "Display of {list:?}");
    assert_eq!(NamePatterns::new(p.patterns()), Ok(p.clone()));
    // The last matching pattern decides, case-insensitively.
    if name.len() <= MAX_GLOB && p.patterns().iter().all(|x| x.len() <= MAX_GLOB) {
        let lname = name.to_ascii_lowercase();
        let mut want = false;
        for pat in p.patterns() {
            match pat.strip_prefix('!') {
                Some(neg) if glob_ref(neg.as_bytes(), lname.as_bytes()) => want = false,
                None if glob_ref(pat.as_bytes(), lname.as_bytes()) => want = true,
                _ => {}
            }
        }
        assert_eq!(p.admits(name), want, "{list:?} admits {name:?}");
    } else {
        let _ = p.admits(name);
    }
}

fn glob_bytes(b: &[u8]) {
    let (pat, name) = match b.iter().position(|&c| c == 0) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &b[..0]),
    };
    let got = glob(pat, name);
    if pat.len() <= MAX_GLOB && name.len() <= MAX_GLOB {
        assert_eq!(
            got,
            glob_ref(pat, name),
            "glob({:?}, {:?})",
            String::from_utf8_lossy(pat),
            String::from_utf8_lossy(name)
        );
    }
}

/// Reference matcher: `*` any run, `?` one byte, everything else itself; dynamic programming
/// over (pattern suffix, name suffix).
fn glob_ref(p: &[u8], n: &[u8]) -> bool {
    let k = n.len();
    // row[j]: p[i..] matches n[j..], for the current i (starting past the end of p).
    let mut row = vec![false; k + 1];
    row[k] = true;
    for &c in p.iter().rev() {
        let mut cur = vec![false; k + 1];
        for j in (0..=k).rev() {
            cur[j] = match c {
                b'*' => row[j] || (j < k && cur[j + 1]),
                b'?' => j < k && row[j + 1],
                _ => j < k && n[j] == c && row[j + 1],
            };
        }
        row = cur;
    }
    row[0]
}

fn push_aio(opts: &mut Vec<String>, aio: scst_examples::spec::AioMode) {
    match aio {
        scst_examples::spec::AioMode::Auto => {}
        scst_examples::spec::AioMode::Uring => opts.push("aio=uring".into()),
        scst_examples::spec::AioMode::Threads => opts.push("aio=threads".into()),
    }
}
