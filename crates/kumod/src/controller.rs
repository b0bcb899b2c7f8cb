//! `kumod controller`: one of a cluster's controllers. It serves the REST API and the dashboard
//! like the all-in-one `kumod`, on a database every controller shares (PostgreSQL), but runs no
//! guest: the hosts that joined (`kumod agent`) are reached through their agents' API
//! ([`kumo_host_rpc::client::RemoteAgent`]), and one controller at a time does the background
//! work (the holder of the lease; see `kumo_control::background::hosts`).

use crate::{control_config, open_store, prepare_data_dir, serve_api, tls, RunArgs};
use kumo_control::agents::AgentEndpoint;
use kumo_control::App;
use kumo_host_api::HostAgent;
use std::sync::Arc;

fn connect(e: &AgentEndpoint) -> anyhow::Result<Arc<dyn HostAgent>> {
    Ok(Arc::new(kumo_host_rpc::client::RemoteAgent::new(&e.address, &e.fingerprint, &e.secret)?))
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let (data_dir, _lock) = prepare_data_dir(&args)?;
    let tls = tls::setup(&args.tls, args.listen, &data_dir)?;
    let store = open_store(&args, &data_dir).await?;
    // Every controller of a cluster must be given the same master key (--master-key-file): it
    // opens the sealed secrets of S3 access keys, whichever controller made them.
    let master = crate::master_key(&args, &data_dir)?;
    // A controller has no host of its own: an id no host row has stands for "none".
    let config = control_config(&args, &data_dir, kumo_types::HostId::from(uuid::Uuid::nil()), master);
    let quarantine = Arc::new(kumo_agent::storage::quarantine::Quarantine::new(config.quarantine_dir()));
    let app = App::open_controller(store, Box::new(connect), quarantine, config).await?;
    // The public images of the machine-wide cache (a cluster on one machine shares it; hosts of
    // a real cluster need the same cache at the same path: see docs/operations.md).
    kumo_control::background::images::startup(&app).await;
    kumo_control::background::spawn_all(&app);
    serve_api(app, &args, &data_dir, tls).await?;
    tracing::info!("controller stopped");
    Ok(())
}
