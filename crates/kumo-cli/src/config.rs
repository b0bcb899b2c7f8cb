//! Where the server address and token come from, and `kumo login` which saves them.
//!
//! Precedence, per setting: the `--url`/`--token` flags, then `KUMO_URL`/`KUMO_TOKEN`, then the
//! config file written by `kumo login` (`$KUMO_CONFIG`, else `~/.config/kumo/config.json`), then
//! (for the URL only) `http://127.0.0.1:7400`. The file holds a secret, so it is written 0600.
//!
//! TLS trust (`--ca-cert`/`KUMO_CA_CERT`, `--fingerprint`/`KUMO_FINGERPRINT`): flags, then the
//! environment, then what `kumo login` saved — the saved trust belongs to the saved URL and is
//! used only when talking to that URL. The CA certificate is saved by content, so later commands
//! need not read the server's data directory.

use crate::client::Client;
use crate::output::{print_json, OutputFormat};
use crate::tls::Trust;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const DEFAULT_URL: &str = "http://127.0.0.1:7400";

/// Contents of the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// PEM certificate(s) trusted for `url` (from `kumo login --ca-cert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// SHA-256 of `url`'s certificate (from `kumo login --fingerprint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl Config {
    fn trust(&self) -> Trust {
        Trust { ca_pem: self.ca_cert.clone(), fingerprint: self.fingerprint.clone() }
    }

    /// The saved trust, when it belongs to `url`.
    fn trust_for(&self, url: &str) -> Option<Trust> {
        (self.url.as_deref().map(|u| u.trim_end_matches('/')) == Some(url.trim_end_matches('/')))
            .then(|| self.trust())
            .filter(|t| !t.is_empty())
    }
}

/// The TLS trust given as flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustFlags<'a> {
    pub ca_cert: Option<&'a Path>,
    pub fingerprint: Option<&'a str>,
}

/// The trust given by flags or, field by field, the environment; `None` when neither gives any.
pub fn explicit_trust(flags: &TrustFlags, env: EnvLookup) -> Result<Option<Trust>> {
    let ca = match flags.ca_cert.map(Path::to_path_buf).or_else(|| env("KUMO_CA_CERT").map(PathBuf::from)) {
        Some(path) => Some(crate::tls::read_ca(&path)?),
        None => None,
    };
    let fingerprint = match flags.fingerprint.map(str::to_string).or_else(|| env("KUMO_FINGERPRINT")) {
        Some(f) => Some(crate::tls::parse_fingerprint(&f)?),
        None => None,
    };
    let trust = Trust { ca_pem: ca, fingerprint };
    Ok((!trust.is_empty()).then_some(trust))
}

/// Server address and token after applying the precedence rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub url: String,
    pub token: Option<String>,
    pub trust: Trust,
}

/// Reads an environment variable; empty counts as unset. Injected so tests need not touch the
/// process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `$KUMO_CONFIG`, else `$HOME/.config/kumo/config.json`.
pub fn config_path(env: EnvLookup) -> Result<PathBuf> {
    if let Some(path) = env("KUMO_CONFIG") {
        return Ok(PathBuf::from(path));
    }
    match env("HOME") {
        Some(home) => Ok(Path::new(&home).join(".config").join("kumo").join("config.json")),
        None => bail!("cannot locate the config file: neither KUMO_CONFIG nor HOME is set"),
    }
}

/// Reads the config file; `None` when it does not exist.
pub fn load(path: &Path) -> Result<Option<Config>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading config file {}", path.display())),
    };
    let config = serde_json::from_str(&text)
        .with_context(|| format!("config file {} is not valid JSON {{\"url\",\"token\"}}", path.display()))?;
    Ok(Some(config))
}

/// Writes the config file with mode 0600 (its directory 0700), replacing it atomically.
pub fn save(path: &Path, config: &Config) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    create_private_dir(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let text = serde_json::to_string_pretty(config).context("formatting config")?;
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    let write = || -> std::io::Result<()> {
        let mut file = private_file(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing config file {}", path.display()));
    }
    Ok(())
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

/// Applies the precedence rules. When a flag or an environment variable already decided the URL
/// and the token, the file is read (through `file`) only for the trust saved for an https URL,
/// and a broken file is then ignored.
pub fn resolve(
    flag_url: Option<&str>,
    flag_token: Option<&str>,
    flags: &TrustFlags,
    env: EnvLookup,
    file: impl FnOnce() -> Result<Option<Config>>,
) -> Result<Settings> {
    let url = flag_url.map(str::to_string).or_else(|| env("KUMO_URL"));
    let token = flag_token.map(str::to_string).or_else(|| env("KUMO_TOKEN"));
    let explicit = explicit_trust(flags, env)?;
    if let (Some(url), Some(token)) = (&url, &token) {
        let trust = match explicit {
            Some(t) => t,
            None if url.starts_with("https:") => {
                file().ok().flatten().and_then(|c| c.trust_for(url)).unwrap_or_default()
            }
            None => Trust::default(),
        };
        return Ok(Settings { url: url.clone(), token: Some(token.clone()), trust });
    }
    let config = file()?.unwrap_or_default();
    let url = url.or(config.url.clone()).unwrap_or_else(|| DEFAULT_URL.to_string());
    let trust = explicit.or_else(|| config.trust_for(&url)).unwrap_or_default();
    Ok(Settings { url, token: token.or(config.token), trust })
}

/// Settings from the process environment and the config file, with a token required.
pub fn client_from(flag_url: Option<&str>, flag_token: Option<&str>, flags: &TrustFlags) -> Result<Client> {
    let env = process_env;
    let settings = resolve(flag_url, flag_token, flags, &env, || load(&config_path(&env)?))?;
    let Some(token) = settings.token else {
        bail!("no API token: pass --token, set KUMO_TOKEN, or run `kumo login --url URL --token-file FILE`");
    };
    Ok(Client::with_trust(&settings.url, &token, &settings.trust)?)
}

/// `kumo login`'s own options; `--url` and `--token` are the global flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LoginArgs {
    /// Read the token from this file (safer than --token, which other users can see in `ps`).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Log in as this user with their password, for a session token (12 hours), instead of
    /// saving a token
    #[arg(long, value_name = "USER", conflicts_with = "token_file")]
    pub user: Option<String>,
    /// Read the password from the first line of standard input (default: ask without echo)
    #[arg(long, requires = "user")]
    pub password_stdin: bool,
}

/// Gets a token (a session from the user's password with `--user`, else the given token),
/// verifies it with `GET /v1/me`, then saves URL, token and TLS trust to the config file.
pub fn login(
    args: &LoginArgs,
    flag_url: Option<&str>,
    flag_token: Option<&str>,
    flags: &TrustFlags,
    output: OutputFormat,
) -> Result<()> {
    let env = process_env;
    let path = config_path(&env)?;
    let saved = load(&path)?;
    let url = match flag_url.map(str::to_string).or_else(|| env("KUMO_URL")) {
        Some(url) => url,
        None => saved.as_ref().and_then(|c| c.url.clone()).unwrap_or_else(|| DEFAULT_URL.to_string()),
    };
    // Logging in again to the same server keeps the trust saved for it.
    let trust = match explicit_trust(flags, &env)? {
        Some(t) => t,
        None => saved.as_ref().and_then(|c| c.trust_for(&url)).unwrap_or_default(),
    };
    let token = match &args.user {
        Some(user) => {
            if flag_token.is_some() {
                bail!("give either --user (and a password) or --token, not both");
            }
            session_token(&url, &trust, user, args.password_stdin)?
        }
        None => login_token(args, flag_token, &env)?,
    };
    let client = Client::with_trust(&url, &token, &trust)?;
    let me = client.get(&["me"], &[])?;
    let config = Config {
        url: Some(client.base_url().to_string()),
        token: Some(token),
        ca_cert: trust.ca_pem,
        fingerprint: trust.fingerprint,
    };
    save(&path, &config)?;
    match output {
        OutputFormat::Json => print_json(&me)?,
        OutputFormat::Table => {
            let kind = me.get("kind").and_then(|v| v.as_str()).unwrap_or("unknown");
            let name = me.get("token_name").and_then(|v| v.as_str()).unwrap_or("unknown");
            let who = match me.get("user").and_then(|v| v.as_str()) {
                Some(user) => format!("{kind} {user}"),
                None => kind.to_string(),
            };
            println!("logged in to {} as {who} (token '{name}'); saved to {}", client.base_url(), path.display());
        }
    }
    Ok(())
}

/// `POST /v1/login` with the user's password; returns the session token.
fn session_token(url: &str, trust: &Trust, user: &str, password_stdin: bool) -> Result<String> {
    let password = crate::users::read_password(password_stdin, &format!("Password for {user}: "), false)?;
    let anonymous = Client::with_trust(url, "", trust)?;
    let body = kumo_types::LoginRequest { username: user.to_string(), password };
    let answer = anonymous.post(&["login"], &[], Some(&body))?;
    match answer.get("token").and_then(|t| t.as_str()) {
        Some(t) if !t.is_empty() => Ok(t.to_string()),
        _ => bail!("the server's login answer has no token"),
    }
}

fn login_token(args: &LoginArgs, flag_token: Option<&str>, env: EnvLookup) -> Result<String> {
    let token = match (&args.token_file, flag_token) {
        (Some(_), Some(_)) => bail!("give either --token or --token-file, not both"),
        (Some(file), None) => fs::read_to_string(file)
            .with_context(|| format!("reading token file {}", file.display()))?
            .trim()
            .to_string(),
        (None, Some(token)) => token.trim().to_string(),
        (None, None) => match env("KUMO_TOKEN") {
            Some(token) => token,
            None => bail!("kumo login needs a token: --token TOKEN or --token-file FILE"),
        },
    };
    if token.is_empty() {
        bail!("the token is empty");
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const NO_FLAGS: TrustFlags = TrustFlags { ca_cert: None, fingerprint: None };

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k: &str| map.get(k).cloned()
    }

    fn file_with(url: &str, token: &str) -> impl FnOnce() -> Result<Option<Config>> {
        let config = Config { url: Some(url.into()), token: Some(token.into()), ..Config::default() };
        move || Ok(Some(config))
    }

    #[test]
    fn flags_beat_env_beat_file_beat_default() {
        let env = env_of(&[("KUMO_URL", "http://env"), ("KUMO_TOKEN", "env-token")]);
        let s = resolve(Some("http://flag"), Some("flag-token"), &NO_FLAGS, &env, file_with("http://file", "f"))
            .expect("resolve");
        assert_eq!(
            s,
            Settings { url: "http://flag".into(), token: Some("flag-token".into()), trust: Trust::default() }
        );

        let s = resolve(None, None, &NO_FLAGS, &env, file_with("http://file", "f")).expect("resolve");
        assert_eq!(s, Settings { url: "http://env".into(), token: Some("env-token".into()), trust: Trust::default() });

        let s =
            resolve(None, Some("flag-token"), &NO_FLAGS, &env_of(&[]), file_with("http://file", "f")).expect("resolve");
        assert_eq!(
            s,
            Settings { url: "http://file".into(), token: Some("flag-token".into()), trust: Trust::default() }
        );

        let s = resolve(None, None, &NO_FLAGS, &env_of(&[]), || Ok(None)).expect("resolve");
        assert_eq!(s, Settings { url: DEFAULT_URL.into(), token: None, trust: Trust::default() });
    }

    #[test]
    fn the_file_is_not_read_when_flags_and_env_decide() {
        let env = env_of(&[("KUMO_TOKEN", "t")]);
        let s = resolve(Some("http://flag"), None, &NO_FLAGS, &env, || bail!("must not be read")).expect("resolve");
        assert_eq!(s.token.as_deref(), Some("t"));
        // But a broken file is reported when it is needed.
        assert!(resolve(None, None, &NO_FLAGS, &env_of(&[]), || bail!("broken")).is_err());
    }

    #[test]
    fn saved_trust_goes_with_its_url_and_flags_beat_env() {
        let pin = vec!["AB"; 32].join(":");
        let saved = Config {
            url: Some("https://h:7400/".into()),
            token: Some("t".into()),
            fingerprint: Some(pin.clone()),
            ..Config::default()
        };
        let file = || Ok(Some(saved.clone()));
        let s = resolve(None, None, &NO_FLAGS, &env_of(&[]), file).expect("resolve");
        assert_eq!(s.trust.fingerprint.as_deref(), Some(pin.as_str()));
        // Flag and env both decide URL and token: the saved trust still applies to its URL...
        let env = env_of(&[("KUMO_TOKEN", "t")]);
        let s = resolve(Some("https://h:7400"), None, &NO_FLAGS, &env, file).expect("resolve");
        assert_eq!(s.trust.fingerprint.as_deref(), Some(pin.as_str()));
        // ...but never to another server.
        let s = resolve(Some("https://other:7400"), None, &NO_FLAGS, &env_of(&[]), file).expect("resolve");
        assert_eq!(s.trust, Trust::default());
        // KUMO_FINGERPRINT replaces the saved pin; the flag beats the environment.
        let other = "cd".repeat(32);
        let env = env_of(&[("KUMO_FINGERPRINT", other.as_str())]);
        let s = resolve(None, None, &NO_FLAGS, &env, file).expect("resolve");
        assert_eq!(s.trust.fingerprint, Some(vec!["CD"; 32].join(":")));
        let flags = TrustFlags { ca_cert: None, fingerprint: Some(&pin) };
        let s = resolve(None, None, &flags, &env, file).expect("resolve");
        assert_eq!(s.trust.fingerprint.as_deref(), Some(pin.as_str()));
        // A bad fingerprint or CA file is an error, not silently no trust.
        let bad = TrustFlags { ca_cert: None, fingerprint: Some("xyz") };
        assert!(resolve(None, None, &bad, &env_of(&[]), file).is_err());
        let env = env_of(&[("KUMO_CA_CERT", "/nonexistent/ca.pem")]);
        let err = resolve(None, None, &NO_FLAGS, &env, file).expect_err("missing CA");
        assert!(format!("{err:#}").contains("/nonexistent/ca.pem"), "{err:#}");
    }

    #[test]
    fn config_path_prefers_kumo_config() {
        let p = config_path(&env_of(&[("KUMO_CONFIG", "/tmp/k.json"), ("HOME", "/home/u")])).expect("path");
        assert_eq!(p, PathBuf::from("/tmp/k.json"));
        let p = config_path(&env_of(&[("HOME", "/home/u")])).expect("path");
        assert_eq!(p, PathBuf::from("/home/u/.config/kumo/config.json"));
        assert!(config_path(&env_of(&[])).is_err());
    }

    #[test]
    fn save_writes_a_private_file_and_load_reads_it_back() {
        let dir = std::env::temp_dir().join(format!("kumo-cli-test-{}", uuid::Uuid::new_v4()));
        let path = dir.join("nested").join("config.json");
        assert_eq!(load(&path).expect("missing is fine"), None);
        let config = Config {
            url: Some("http://h:7400".into()),
            token: Some("s3cret".into()),
            fingerprint: Some("AB".into()),
            ..Config::default()
        };
        save(&path, &config).expect("save");
        save(&path, &config).expect("overwrite");
        assert_eq!(load(&path).expect("load"), Some(config));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        fs::write(&path, "not json").expect("write");
        let err = load(&path).expect_err("bad json");
        assert!(format!("{err:#}").contains("config.json"), "{err:#}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn login_token_sources() {
        let dir = std::env::temp_dir().join(format!("kumo-cli-token-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        fs::write(&file, "abc\n").expect("write");
        let with_file = LoginArgs { token_file: Some(file), user: None, password_stdin: false };
        let none = LoginArgs { token_file: None, user: None, password_stdin: false };
        let no_env = env_of(&[]);
        assert_eq!(login_token(&with_file, None, &no_env).expect("file"), "abc");
        assert!(login_token(&with_file, Some("x"), &no_env).is_err());
        assert_eq!(login_token(&none, Some("x"), &no_env).expect("flag"), "x");
        assert_eq!(login_token(&none, None, &env_of(&[("KUMO_TOKEN", "e")])).expect("env"), "e");
        assert!(login_token(&none, None, &no_env).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
