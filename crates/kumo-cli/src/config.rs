//! Where the server address and token come from, and `kumo login` which saves them.
//!
//! Precedence, per setting: the `--url`/`--token` flags, then `KUMO_URL`/`KUMO_TOKEN`, then the
//! config file written by `kumo login` (`$KUMO_CONFIG`, else `~/.config/kumo/config.json`), then
//! (for the URL only) `http://127.0.0.1:7400`. The file holds a secret, so it is written 0600.

use crate::client::Client;
use crate::output::{print_json, OutputFormat};
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
}

/// Server address and token after applying the precedence rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub url: String,
    pub token: Option<String>,
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

/// Applies the precedence rules. The file is only read (through `file`) when a flag or an
/// environment variable did not already decide both settings.
pub fn resolve(
    flag_url: Option<&str>,
    flag_token: Option<&str>,
    env: EnvLookup,
    file: impl FnOnce() -> Result<Option<Config>>,
) -> Result<Settings> {
    let url = flag_url.map(str::to_string).or_else(|| env("KUMO_URL"));
    let token = flag_token.map(str::to_string).or_else(|| env("KUMO_TOKEN"));
    if let (Some(url), Some(token)) = (&url, &token) {
        return Ok(Settings { url: url.clone(), token: Some(token.clone()) });
    }
    let config = file()?.unwrap_or_default();
    Ok(Settings { url: url.or(config.url).unwrap_or_else(|| DEFAULT_URL.to_string()), token: token.or(config.token) })
}

/// Settings from the process environment and the config file, with a token required.
pub fn client_from(flag_url: Option<&str>, flag_token: Option<&str>) -> Result<Client> {
    let env = process_env;
    let settings = resolve(flag_url, flag_token, &env, || load(&config_path(&env)?))?;
    let Some(token) = settings.token else {
        bail!("no API token: pass --token, set KUMO_TOKEN, or run `kumo login --url URL --token-file FILE`");
    };
    Ok(Client::new(&settings.url, &token)?)
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
/// verifies it with `GET /v1/me`, then saves URL and token to the config file.
pub fn login(args: &LoginArgs, flag_url: Option<&str>, flag_token: Option<&str>, output: OutputFormat) -> Result<()> {
    let env = process_env;
    let path = config_path(&env)?;
    let url = match flag_url.map(str::to_string).or_else(|| env("KUMO_URL")) {
        Some(url) => url,
        None => load(&path)?.and_then(|c| c.url).unwrap_or_else(|| DEFAULT_URL.to_string()),
    };
    let token = match &args.user {
        Some(user) => {
            if flag_token.is_some() {
                bail!("give either --user (and a password) or --token, not both");
            }
            session_token(&url, user, args.password_stdin)?
        }
        None => login_token(args, flag_token, &env)?,
    };
    let client = Client::new(&url, &token)?;
    let me = client.get(&["me"], &[])?;
    save(&path, &Config { url: Some(client.base_url().to_string()), token: Some(token) })?;
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
fn session_token(url: &str, user: &str, password_stdin: bool) -> Result<String> {
    let password = crate::users::read_password(password_stdin, &format!("Password for {user}: "), false)?;
    let anonymous = Client::new(url, "")?;
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

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k: &str| map.get(k).cloned()
    }

    fn file_with(url: &str, token: &str) -> impl FnOnce() -> Result<Option<Config>> {
        let config = Config { url: Some(url.into()), token: Some(token.into()) };
        move || Ok(Some(config))
    }

    #[test]
    fn flags_beat_env_beat_file_beat_default() {
        let env = env_of(&[("KUMO_URL", "http://env"), ("KUMO_TOKEN", "env-token")]);
        let s = resolve(Some("http://flag"), Some("flag-token"), &env, file_with("http://file", "f")).expect("resolve");
        assert_eq!(s, Settings { url: "http://flag".into(), token: Some("flag-token".into()) });

        let s = resolve(None, None, &env, file_with("http://file", "f")).expect("resolve");
        assert_eq!(s, Settings { url: "http://env".into(), token: Some("env-token".into()) });

        let s = resolve(None, Some("flag-token"), &env_of(&[]), file_with("http://file", "f")).expect("resolve");
        assert_eq!(s, Settings { url: "http://file".into(), token: Some("flag-token".into()) });

        let s = resolve(None, None, &env_of(&[]), || Ok(None)).expect("resolve");
        assert_eq!(s, Settings { url: DEFAULT_URL.into(), token: None });
    }

    #[test]
    fn the_file_is_not_read_when_flags_and_env_decide() {
        let env = env_of(&[("KUMO_TOKEN", "t")]);
        let s = resolve(Some("http://flag"), None, &env, || bail!("must not be read")).expect("resolve");
        assert_eq!(s.token.as_deref(), Some("t"));
        // But a broken file is reported when it is needed.
        assert!(resolve(None, None, &env_of(&[]), || bail!("broken")).is_err());
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
        let config = Config { url: Some("http://h:7400".into()), token: Some("s3cret".into()) };
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
