//! DKIM keys made by openssl, and signatures judged by dkimpy (Debian's python3-dkim):
//! neither is gazette's own code.
#![allow(dead_code)]

use base64::Engine as _;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A key file and the DNS TXT record that publishes its public half.
pub struct Key {
    pub file: PathBuf,
    pub record: String,
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    out.stdout
}

/// A fresh RSA key of `bits` in PKCS#1 PEM, and its `k=rsa` record (SubjectPublicKeyInfo).
pub fn rsa_key(dir: &Path, bits: u32) -> Key {
    let file = dir.join(format!("dkim-rsa-{bits}.pem"));
    let path = file.to_str().unwrap();
    openssl(&["genrsa", "-traditional", "-out", path, &bits.to_string()]);
    let public = openssl(&["rsa", "-in", path, "-pubout", "-outform", "DER"]);
    let p = base64::engine::general_purpose::STANDARD.encode(public);
    Key {
        file,
        record: format!("v=DKIM1; k=rsa; p={p}"),
    }
}

/// A fresh Ed25519 key in PKCS#8 PEM, and its `k=ed25519` record (the raw 32 bytes).
pub fn ed25519_key(dir: &Path) -> Key {
    let file = dir.join("dkim-ed25519.pem");
    let path = file.to_str().unwrap();
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", path]);
    let public = openssl(&["pkey", "-in", path, "-pubout", "-outform", "DER"]);
    let raw = &public[public.len() - 32..];
    let p = base64::engine::general_purpose::STANDARD.encode(raw);
    Key {
        file,
        record: format!("v=DKIM1; k=ed25519; p={p}"),
    }
}

/// The verdict on each DKIM-Signature of `message`, in order, from dkimpy with the DNS
/// answers taken from `records` (name → TXT value). Empty when the message has none.
pub fn verify(message: &[u8], records: &BTreeMap<String, String>) -> Vec<bool> {
    const SCRIPT: &str = r#"
import json, sys, dkim
records = json.loads(sys.argv[1])
msg = sys.stdin.buffer.read()
def dns(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    value = records.get(name.rstrip('.'))
    return value.encode() if value is not None else None
d = dkim.DKIM(msg)
count = sum(1 for line in msg.split(b'\r\n') if line.lower().startswith(b'dkim-signature:'))
print(json.dumps([bool(d.verify(idx=i, dnsfunc=dns)) for i in range(count)]))
"#;
    let json = serde_json::to_string(records).unwrap();
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT, &json])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 with dkimpy (python3-dkim)");
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        out.status.success(),
        "dkimpy: {}\non:\n{head}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("dkimpy's verdicts")
}
