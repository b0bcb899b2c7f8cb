//! Volume keys for encryption at rest (LUKS inside qcow2, QEMU's native format).
//!
//! Each encrypted volume has its own random 256-bit key. Keys are stored wrapped: sealed with
//! ChaCha20-Poly1305 under a master key ([`MasterKey`]: by default `<data-dir>/master.key`, mode
//! 0600, made on first use; or kept outside the data directory, `kumod --master-key-file` or the
//! service's environment `KUMOD_MASTER_KEY`, see docs/operations.md),
//! with the volume id as associated data so a wrapped key cannot be swapped onto another volume.
//! A key is unwrapped only to hand it to `qemu-img` or QEMU through a transient 0600 file
//! (`--object secret,file=…`), never on a command line; the file is removed as soon as the tool
//! or QEMU has read it ([`SecretFile`] removes it on drop).

use crate::{AgentError, Result};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use uuid::Uuid;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// Where the master key comes from.
#[derive(Clone)]
pub enum MasterKey {
    /// A file of 32 raw bytes, made (random, 0600) on first use if missing: the default
    /// `<data-dir>/master.key`.
    File(PathBuf),
    /// Given from outside the data directory (a file on another mount, or the environment);
    /// `from` says where, for messages.
    Given { key: [u8; KEY_LEN], from: String },
}

impl std::fmt::Debug for MasterKey {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterKey::File(p) => write!(f, "MasterKey::File({})", p.display()),
            MasterKey::Given { from, .. } => write!(f, "MasterKey::Given({from})"),
        }
    }
}

impl MasterKey {
    /// Where the key comes from, for messages.
    pub fn describe(&self) -> String {
        match self {
            MasterKey::File(p) => p.display().to_string(),
            MasterKey::Given { from, .. } => from.clone(),
        }
    }

    /// The master key's cipher, the key made (random, 0600) if it is the data directory's file and
    /// there is none yet.
    pub fn cipher(&self) -> Result<ChaCha20Poly1305> {
        let master_path = match self {
            MasterKey::Given { key, .. } => return Ok(ChaCha20Poly1305::new(Key::from_slice(key))),
            MasterKey::File(p) => p,
        };
        let io = |what: &str, e| AgentError::io(format!("{what} {}", master_path.display()), e);
        if !master_path.exists() {
            let mut key = [0u8; KEY_LEN];
            rand::thread_rng().fill_bytes(&mut key);
            let tmp = master_path.with_extension("tmp");
            let _ = std::fs::remove_file(&tmp);
            write_private(&tmp, &key).map_err(|e| io("write", e))?;
            // Never replace an existing master key (another writer won the race).
            std::fs::hard_link(&tmp, master_path).or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(io("install", e)),
            })?;
            let _ = std::fs::remove_file(&tmp);
        }
        let key = std::fs::read(master_path).map_err(|e| io("read", e))?;
        if key.len() != KEY_LEN {
            return Err(AgentError::Hypervisor(format!("master key {} is corrupt", master_path.display())));
        }
        Ok(ChaCha20Poly1305::new(Key::from_slice(&key)))
    }

    /// Seals a small secret under the master key: a random nonce followed by the ciphertext; `aad`
    /// binds it to what it belongs to (it opens only with the same `aad`).
    pub fn seal(&self, aad: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher()?
            .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad })
            .map_err(|_| AgentError::Hypervisor("sealing a secret failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`MasterKey::seal`] sealed with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() <= NONCE_LEN {
            return Err(AgentError::Hypervisor("a sealed secret is corrupt".into()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher()?
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| AgentError::Hypervisor("a sealed secret does not open under the master key".into()))
    }

    /// A key given as text or bytes: 32 raw bytes, or 64 hex digits, or base64 of 32 bytes
    /// (surrounding whitespace ignored).
    pub fn parse(bytes: &[u8], from: &str) -> std::result::Result<MasterKey, String> {
        use base64::Engine;
        let bad = || {
            format!(
                "the master key from {from} is not 32 bytes, 64 hex digits or base64 of 32 bytes \
                 (make one with: head -c 32 /dev/urandom | base64)"
            )
        };
        let key: Vec<u8> = if bytes.len() == KEY_LEN {
            bytes.to_vec()
        } else {
            let text = std::str::from_utf8(bytes).map_err(|_| bad())?.trim();
            if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                hex::decode(text).map_err(|_| bad())?
            } else {
                base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| bad())?
            }
        };
        let key: [u8; KEY_LEN] = key.try_into().map_err(|_| bad())?;
        Ok(MasterKey::Given { key, from: from.to_string() })
    }
}

/// Wrapped volume keys in a directory, under a master key.
pub struct KeyStore {
    dir: PathBuf,
    master: MasterKey,
}

/// What [`KeyStore::check_master`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MasterCheck {
    /// Wrapped keys the master key opens.
    pub open: usize,
    /// Wrapped keys it does not open.
    pub refused: Vec<Uuid>,
}

/// A transient secret file for QEMU or qemu-img; removed when dropped.
#[derive(Debug)]
pub struct SecretFile {
    /// The QEMU object id (`secret,id=…`).
    pub id: String,
    pub path: PathBuf,
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The QEMU secret object id of a volume's key.
pub fn secret_id(volume: Uuid) -> String {
    format!("s{}", &volume.simple().to_string()[8..])
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

impl KeyStore {
    pub fn new(dir: PathBuf, master_path: PathBuf) -> KeyStore {
        KeyStore { dir, master: MasterKey::File(master_path) }
    }

    pub fn with_master(dir: PathBuf, master: MasterKey) -> KeyStore {
        KeyStore { dir, master }
    }

    /// The directory of wrapped keys (and of transient `*.secret` files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Tries the master key on every wrapped key: a master key that opens none of the existing
    /// keys is not the one that sealed them (kumod refuses to start with it).
    pub fn check_master(&self) -> Result<MasterCheck> {
        let mut check = MasterCheck::default();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(check),
            Err(e) => return Err(AgentError::io(format!("list {}", self.dir.display()), e)),
        };
        let mut volumes: Vec<Uuid> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".key").and_then(|s| Uuid::parse_str(s).ok()))
            .collect();
        volumes.sort();
        if volumes.is_empty() {
            return Ok(check);
        }
        if let MasterKey::File(p) = &self.master {
            // Never make a new master key while keys sealed under the old one exist.
            if !p.exists() {
                return Err(AgentError::Hypervisor(format!(
                    "there is no master key at {} but it sealed the keys of {} encrypted volume(s) in {}; \
                     give it with --master-key-file or KUMOD_MASTER_KEY",
                    p.display(),
                    volumes.len(),
                    self.dir.display()
                )));
            }
        }
        let cipher = self.master()?;
        for v in volumes {
            match self.open_with(&cipher, v) {
                Ok(_) => check.open += 1,
                Err(_) => check.refused.push(v),
            }
        }
        Ok(check)
    }

    pub fn wrapped_path(&self, volume: Uuid) -> PathBuf {
        self.dir.join(format!("{volume}.key"))
    }

    /// The master key, made (random, 0600) if it is the data directory's file and there is none yet.
    fn master(&self) -> Result<ChaCha20Poly1305> {
        self.master.cipher()
    }

    /// Whether the volume has a key (is encrypted).
    pub fn has(&self, volume: Uuid) -> bool {
        self.wrapped_path(volume).exists()
    }

    /// Makes a new random key for the volume (a no-op if it has one).
    pub fn create(&self, volume: Uuid) -> Result<()> {
        if self.has(volume) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| AgentError::io("create keys dir", e))?;
        let mut key = [0u8; KEY_LEN];
        rand::thread_rng().fill_bytes(&mut key);
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = volume.to_string();
        let sealed = self
            .master()?
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: &key, aad: aad.as_bytes() })
            .map_err(|_| AgentError::Hypervisor("sealing a volume key failed".into()))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&sealed);
        let path = self.wrapped_path(volume);
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        write_private(&tmp, &wrapped).map_err(|e| AgentError::io("write volume key", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| AgentError::io("install volume key", e))
    }

    /// The volume's key, unwrapped, as the hex passphrase LUKS is given.
    fn passphrase(&self, volume: Uuid) -> Result<String> {
        self.open_with(&self.master()?, volume)
    }

    fn open_with(&self, master: &ChaCha20Poly1305, volume: Uuid) -> Result<String> {
        let wrapped = std::fs::read(self.wrapped_path(volume)).map_err(|e| AgentError::io("read volume key", e))?;
        if wrapped.len() <= NONCE_LEN {
            return Err(AgentError::Hypervisor(format!("the key of volume {volume} is corrupt")));
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let aad = volume.to_string();
        let key =
            master.decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: aad.as_bytes() }).map_err(|_| {
                AgentError::Hypervisor(format!("the key of volume {volume} does not open under the master key"))
            })?;
        Ok(hex::encode(key))
    }

    /// Writes the volume's key to a transient 0600 file for QEMU or qemu-img.
    pub fn secret_file(&self, volume: Uuid) -> Result<SecretFile> {
        let passphrase = self.passphrase(volume)?;
        let path = self.dir.join(format!("{volume}.{}.secret", Uuid::new_v4().simple()));
        write_private(&path, passphrase.as_bytes()).map_err(|e| AgentError::io("write secret file", e))?;
        Ok(SecretFile { id: secret_id(volume), path })
    }

    pub fn delete(&self, volume: Uuid) -> Result<()> {
        match std::fs::remove_file(self.wrapped_path(volume)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(AgentError::io("remove volume key", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_wrapped_private_and_bound_to_their_volume() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::new(dir.path().join("keys"), dir.path().join("master.key"));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        ks.create(a).unwrap();
        ks.create(b).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("master.key")), 0o600);
        assert_eq!(mode(&ks.wrapped_path(a)), 0o600);
        let pa = ks.passphrase(a).unwrap();
        assert_eq!(pa.len(), 64);
        assert_ne!(pa, ks.passphrase(b).unwrap());
        // The stored form does not contain the key.
        let key = hex::decode(&pa).unwrap();
        let stored = std::fs::read(ks.wrapped_path(a)).unwrap();
        assert!(!stored.windows(key.len()).any(|w| w == key.as_slice()));
        // A wrapped key moved onto another volume does not open.
        std::fs::copy(ks.wrapped_path(a), ks.wrapped_path(b)).unwrap();
        assert!(ks.passphrase(b).is_err());
        let f = ks.secret_file(a).unwrap();
        assert_eq!(std::fs::read_to_string(&f.path).unwrap(), pa);
        assert_eq!(mode(&f.path), 0o600);
        let path = f.path.clone();
        drop(f);
        assert!(!path.exists());
    }

    #[test]
    fn a_given_master_key_seals_and_a_wrong_one_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let hexkey = "11".repeat(32);
        let master = MasterKey::parse(hexkey.as_bytes(), "test").unwrap();
        let ks = KeyStore::with_master(dir.path().join("keys"), master);
        assert_eq!(ks.check_master().unwrap(), MasterCheck::default());
        let v = Uuid::now_v7();
        ks.create(v).unwrap();
        assert!(!dir.path().join("master.key").exists(), "a given key is never written to the data dir");
        assert_eq!(ks.check_master().unwrap().open, 1);
        // The same key as base64 and raw bytes opens it too.
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0x11u8; 32]);
        for given in [MasterKey::parse(b64.as_bytes(), "b64").unwrap(), MasterKey::parse(&[0x11; 32], "raw").unwrap()] {
            assert_eq!(KeyStore::with_master(dir.path().join("keys"), given).check_master().unwrap().open, 1);
        }
        let wrong = MasterKey::parse("22".repeat(32).as_bytes(), "wrong").unwrap();
        let check = KeyStore::with_master(dir.path().join("keys"), wrong).check_master().unwrap();
        assert_eq!((check.open, check.refused), (0, vec![v]));
        assert!(MasterKey::parse(b"short", "x").unwrap_err().contains("32 bytes"));
    }

    #[test]
    fn sealed_secrets_open_only_with_their_aad_key_and_bytes() {
        let master = MasterKey::parse("33".repeat(32).as_bytes(), "test").unwrap();
        let secret = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let sealed = master.seal(b"KUMOAAAAAAAAAAAAAAAA", secret).unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + secret.len() + 16, "nonce, ciphertext, tag");
        assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_slice()), "the secret is not in clear");
        assert_eq!(master.open(b"KUMOAAAAAAAAAAAAAAAA", &sealed).unwrap(), secret);
        // Two seals of the same secret differ (a fresh nonce each time) and both open.
        let again = master.seal(b"KUMOAAAAAAAAAAAAAAAA", secret).unwrap();
        assert_ne!(again, sealed);
        assert_eq!(master.open(b"KUMOAAAAAAAAAAAAAAAA", &again).unwrap(), secret);
        // Bound to its aad: moved onto another key id, it does not open.
        assert!(master.open(b"KUMOBBBBBBBBBBBBBBBB", &sealed).is_err());
        assert!(master.open(b"", &sealed).is_err());
        // Any flipped byte (nonce, ciphertext or tag) is refused.
        for i in [0, NONCE_LEN - 1, NONCE_LEN, NONCE_LEN + 5, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(master.open(b"KUMOAAAAAAAAAAAAAAAA", &bad).is_err(), "flipped byte {i} was accepted");
        }
        // Truncated to its nonce (or less), or cut short, it is corrupt.
        assert!(master.open(b"KUMOAAAAAAAAAAAAAAAA", &sealed[..NONCE_LEN]).is_err());
        assert!(master.open(b"KUMOAAAAAAAAAAAAAAAA", &sealed[..sealed.len() - 1]).is_err());
        // Another master key does not open it.
        let other = MasterKey::parse("44".repeat(32).as_bytes(), "other").unwrap();
        assert!(other.open(b"KUMOAAAAAAAAAAAAAAAA", &sealed).is_err());
        // A data-directory master key file seals and opens the same way (made on first use).
        let dir = tempfile::tempdir().unwrap();
        let file = MasterKey::File(dir.path().join("master.key"));
        let sealed = file.seal(b"aad", b"s3cret").unwrap();
        assert!(dir.path().join("master.key").exists());
        assert_eq!(file.open(b"aad", &sealed).unwrap(), b"s3cret");
    }
}
