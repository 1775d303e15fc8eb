//! Start-up and shutdown of a broker: opens the metadata log and the partitions, serves gRPC, runs the
//! background upkeep, and on a stop signal drains requests and closes every log cleanly.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rill_proto::v1::replication_server::ReplicationServer;
use rill_proto::v1::rill_server::RillServer;
use rill_storage::FsBackend;
use tokio::sync::watch;

use crate::cluster_link::ClusterLink;
use crate::config::BrokerConfig;
use crate::manager::PartitionManager;
use crate::metadata::controller::TopicPolicy;
use crate::metadata::log::FileMetadataLog;
use crate::metadata::{Controller, MetadataState};
use crate::service::{BrokerCore, ReplicationService, RillService, now_ms};

/// How often the upkeep task wakes: the finest `flush.ms` an `interval` topic gets.
const UPKEEP_TICK_MS: u64 = 20;

/// Runs a broker until `stop` resolves, then shuts it down cleanly. The controller runs in this process over
/// the metadata log in the data directory.
pub async fn run(config: BrokerConfig, stop: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", config.data_dir.display()))?;
    let (metadata_log, records) = FileMetadataLog::open(&config.data_dir.join("metadata"))
        .map_err(|e| anyhow::anyhow!("cannot open the metadata log in {}: {e}", config.data_dir.display()))?;
    let policy = TopicPolicy {
        defaults: config.topic_defaults.clone(),
        batch_bytes_max: config.batch_bytes_max,
        default_replication_factor: config.default_replication_factor,
    };
    let controller = Arc::new(Mutex::new(Controller::open(Box::new(metadata_log), records, policy)));
    run_with_controller(config, controller, stop).await
}

/// Runs a broker whose controller is `controller`: its own (see `run`), or one shared by several brokers
/// of one process (multi-broker tests).
pub async fn run_with_controller(
    config: BrokerConfig,
    controller: Arc<Mutex<Controller>>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let (broker_epoch, metadata) = {
        let mut controller = controller.lock().unwrap_or_else(|p| p.into_inner());
        (controller.register_broker(config.node_id, &config.advertised_address)?, controller.subscribe())
    };

    let link = Arc::new(ClusterLink::new(config.node_id, broker_epoch, metadata.clone(), controller.clone()));
    let partitions = Arc::new(PartitionManager::new(
        link,
        &config.data_dir,
        Arc::new(FsBackend::new()),
        config.topic_defaults.clone(),
        config.batch_bytes_max,
        config.replica_lag_ms_max,
    )?);
    let started = std::time::Instant::now();
    {
        let state = metadata.borrow().clone();
        let partitions = partitions.clone();
        tokio::task::spawn_blocking(move || partitions.apply_metadata(&state, now_ms())).await?;
    }
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "partitions opened");

    let (shutdown_tx, shutdown) = watch::channel(false);
    let core = Arc::new(BrokerCore {
        config: config.clone(),
        controller,
        metadata: metadata.clone(),
        partitions: partitions.clone(),
        shutdown: shutdown.clone(),
    });
    let follower = tokio::spawn(follow_metadata(metadata, partitions.clone()));
    let upkeep = tokio::spawn(upkeep(config.clone(), partitions.clone(), shutdown.clone()));

    let service = RillServer::new(RillService::new(core.clone()))
        .max_decoding_message_size(config.request_bytes_max as usize)
        .max_encoding_message_size(usize::MAX);
    let replication = ReplicationServer::new(ReplicationService::new(core)).max_encoding_message_size(usize::MAX);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let local = config.listen;
    tracing::info!(node_id = config.node_id, broker_epoch, listen = %local, data_dir = %config.data_dir.display(), "rill broker ready");

    let (signalled_tx, mut signalled) = watch::channel(false);
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(service)
        .add_service(replication)
        .serve_with_incoming_shutdown(incoming, async move {
            stop.await;
            tracing::info!("stop signal received: draining requests");
            let _ = shutdown_tx.send(true);
            let _ = signalled_tx.send(true);
        });
    let drain_limit = async {
        let _ = signalled.wait_for(|s| *s).await;
        tokio::time::sleep(Duration::from_millis(config.shutdown_timeout_ms)).await;
    };
    tokio::select! {
        served = server => served.map_err(|e| anyhow::anyhow!("gRPC server failed: {e}"))?,
        _ = drain_limit => tracing::warn!("in-flight requests did not finish in time; closing anyway"),
    }
    upkeep.abort();
    follower.abort();
    let partitions_to_close = partitions.clone();
    tokio::task::spawn_blocking(move || partitions_to_close.close_all()).await?;
    tracing::info!("broker stopped cleanly");
    Ok(())
}

/// Applies every published metadata change to the hosted partitions, in order.
async fn follow_metadata(mut metadata: watch::Receiver<Arc<MetadataState>>, partitions: Arc<PartitionManager>) {
    while metadata.changed().await.is_ok() {
        let state = metadata.borrow_and_update().clone();
        let partitions = partitions.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || partitions.apply_metadata(&state, now_ms())).await {
            tracing::error!(error = %e, "applying metadata failed");
        }
    }
}

/// Interval flushes, roll by age, retention and recovery-point checkpoints.
async fn upkeep(config: BrokerConfig, partitions: Arc<PartitionManager>, shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(UPKEEP_TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_retention = now_ms();
    let mut last_checkpoint = now_ms();
    while !*shutdown.borrow() {
        tick.tick().await;
        let now = now_ms();
        let retention_due = now - last_retention >= config.retention_check_interval_ms as i64;
        let checkpoint_due = now - last_checkpoint >= config.checkpoint_interval_ms as i64;
        if retention_due {
            last_retention = now;
        }
        if checkpoint_due {
            last_checkpoint = now;
        }
        let partitions = partitions.clone();
        let work = tokio::task::spawn_blocking(move || {
            partitions.maintain(now, retention_due);
            if checkpoint_due {
                partitions.checkpoint_all();
            }
        });
        if let Err(e) = work.await {
            tracing::error!(error = %e, "upkeep failed");
        }
    }
}
