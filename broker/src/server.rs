//! Start-up and shutdown of a broker: starts the controller quorum, the gRPC server (one port for every
//! service) and the Kafka listener (its own port), registers with the active controller, opens partitions
//! as metadata assigns them, reloads the TLS material when it changes, keeps the controller session alive (heartbeats and the lease), runs the
//! background upkeep, and on a stop signal moves its leaderships away (controlled shutdown), drains requests
//! and closes every log cleanly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rill_proto::v1::controller_server::ControllerServer;
use rill_proto::v1::replication_server::ReplicationServer;
use rill_proto::v1::rill_server::RillServer;
use rill_storage::FsBackend;
use tokio::sync::watch;

use crate::clock::{monotonic_ms, now_ms};
use crate::cluster_link::ClusterLink;
use crate::config::BrokerConfig;
use crate::group::GroupCoordinator;
use crate::limits::HTTP2_FRAME_BYTES_MAX;
use crate::manager::PartitionManager;
use crate::metadata::raft::{MetadataQuorum, QuorumConfig};
use crate::metadata::{Controller, MetadataState, TopicPolicy};
use crate::metrics::Metrics;
use crate::requests::BrokerCore;
use crate::security::tls::{Tls, grpc_incoming, watch_files};
use crate::service::{ControllerService, InterceptedService, ReplicationService, RillService};

/// How often the upkeep task wakes: the finest `flush.ms` an `interval` topic gets.
const UPKEEP_TICK_MS: u64 = 20;

/// Runs a broker until `stop` resolves, then shuts it down cleanly.
pub async fn run(config: BrokerConfig, stop: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", config.data_dir.display()))?;
    // Bad TLS files stop the broker here, before it listens anywhere.
    let tls = match &config.tls {
        Some(settings) => Some(Tls::load(settings.clone())?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let kafka_listener = match &config.kafka {
        Some(kafka) => Some(
            tokio::net::TcpListener::bind(kafka.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen for Kafka clients on {}: {e}", kafka.listen))?,
        ),
        None => None,
    };
    let http_listener = match config.http_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen for HTTP (metrics, console) on {address}: {e}"))?,
        ),
        None => None,
    };
    let kafka_address = config.kafka.as_ref().map(|kafka| kafka.advertised_address.clone());

    let voters = config.controller_voters.iter().map(|(id, address)| (u64::from(*id), address.clone())).collect();
    let raft_dir = config.data_dir.join("metadata").join("raft");
    let quorum_config = QuorumConfig { peer_tls: tls.clone(), ..QuorumConfig::default() };
    let quorum = MetadataQuorum::start(u64::from(config.node_id), voters, &raft_dir, quorum_config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the controller quorum in {}: {e}", raft_dir.display()))?;
    let quorum = Arc::new(quorum);
    let policy = TopicPolicy {
        defaults: config.topic_defaults.clone(),
        batch_bytes_max: config.batch_bytes_max,
        default_replication_factor: config.default_replication_factor,
        encryption_key_loaded: config.encryption_keys.is_some(),
    };
    let controller = Arc::new(Controller::new(config.node_id, quorum.clone(), policy, config.session_timeout_ms));
    let metrics = Metrics::default();
    let link =
        Arc::new(ClusterLink::new(config.node_id, controller.clone(), config.controller_voters.clone(), tls.clone()));
    let partitions = Arc::new(PartitionManager::new(
        link.clone(),
        &config.data_dir,
        Arc::new(FsBackend::new()),
        config.topic_defaults.clone(),
        config.batch_bytes_max,
        config.replica_lag_ms_max,
        config.encryption_keys.clone(),
        metrics.clone(),
    )?);
    let groups = Arc::new(GroupCoordinator::new(
        link.clone(),
        partitions.clone(),
        controller.subscribe(),
        config.produce_timeout_ms,
    ));
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (ready_tx, ready) = watch::channel(false);
    let metadata = controller.subscribe();
    let core = Arc::new(BrokerCore::new(
        config.clone(),
        controller.clone(),
        link.clone(),
        partitions.clone(),
        groups.clone(),
        shutdown.clone(),
        ready,
        metrics,
    ));

    // The server starts first: the controller quorum elects its leader over it.
    let rill = RillServer::new(RillService::new(core.clone()))
        .max_decoding_message_size(config.request_bytes_max as usize)
        .max_encoding_message_size(usize::MAX);
    // The broker-to-broker services admit only callers allowed `cluster_action` (the brokers themselves).
    let internal = || crate::service::internal_only(core.clone());
    let replication = InterceptedService::new(
        ReplicationServer::new(ReplicationService::new(core.clone())).max_encoding_message_size(usize::MAX),
        internal(),
    );
    let controller_rpc =
        InterceptedService::new(ControllerServer::new(ControllerService::new(core.clone())), internal());
    let raft_rpc = InterceptedService::new(quorum.grpc_service(), internal());
    // Every connection is accepted (and its TLS handshake run) by `grpc_incoming`, which gives each
    // request its `PeerIdentity` in the extensions, with TLS or without.
    let incoming = grpc_incoming(listener, tls.clone());
    let (signalled_tx, mut signalled) = watch::channel(false);
    // Controlled shutdown: while everything still serves, the controller moves this broker's leaderships to
    // other in-sync replicas and takes it out of the ISRs; only then do requests drain.
    let stopping_core = core.clone();
    let controlled_shutdown_ms = config.controlled_shutdown_timeout_ms;
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_frame_size(Some(HTTP2_FRAME_BYTES_MAX))
        .add_service(rill)
        .add_service(replication)
        .add_service(controller_rpc)
        .add_service(raft_rpc)
        .serve_with_incoming_shutdown(incoming, async move {
            stop.await;
            if controlled_shutdown_ms > 0 && *stopping_core.ready.borrow() {
                tracing::info!("stop signal received: moving leaderships to other in-sync replicas");
                stopping_core.controlled_shutdown(controlled_shutdown_ms).await;
            }
            drop(stopping_core);
            tracing::info!("stop signal received: draining requests");
            let _ = shutdown_tx.send(true);
            let _ = signalled_tx.send(true);
        });
    let mut server = tokio::spawn(server);
    // Kafka requests other than ApiVersions wait for `ready`, as gRPC requests do.
    let mut kafka =
        kafka_listener.map(|listener| tokio::spawn(crate::kafka::serve(listener, core.clone(), tls.clone())));
    let http = http_listener.map(|listener| tokio::spawn(crate::http::serve(listener, core.clone())));
    let reload = tls.clone().map(|tls| {
        let poll_ms = tls.config().reload_poll_ms;
        tokio::spawn(watch_files(tls, poll_ms, shutdown.clone()))
    });

    let started = std::time::Instant::now();
    let mut stopping = shutdown.clone();
    let registration_sent_ms = monotonic_ms();
    let registered = tokio::select! {
        registered = register(&link, &config.advertised_address, kafka_address.as_deref()) => registered,
        _ = stopping.wait_for(|s| *s) => Err(anyhow::anyhow!("stopped before registering")),
    };
    // The registration is committed, but this node's own copy of the metadata may still be the one it had
    // before it stopped (it replays its log and catches up through Raft): acting on that would lead
    // partitions in epochs the controller has since moved on from. Wait until it holds the registration
    // record (at offset `broker_epoch`) and so everything committed before it.
    let registered = match registered {
        Ok(broker_epoch) => {
            let mut caught_up = metadata.clone();
            tokio::select! {
                seen = caught_up.wait_for(|state| state.next_offset > broker_epoch) => match seen {
                    Ok(_) => Ok(broker_epoch),
                    Err(_) => Err(anyhow::anyhow!("the metadata quorum stopped before this broker caught up")),
                },
                _ = stopping.wait_for(|s| *s) => Err(anyhow::anyhow!("stopped before the metadata caught up")),
            }
        }
        Err(e) => Err(e),
    };
    let mut tasks = Vec::new();
    match registered {
        Ok(broker_epoch) => {
            link.renew_lease(registration_sent_ms, config.session_timeout_ms);
            // Open the partitions this node holds, as of the metadata that includes its registration.
            let state = metadata.borrow().clone();
            let opening = partitions.clone();
            tokio::task::spawn_blocking(move || opening.apply_metadata(&state, now_ms())).await?;
            tracing::info!(
                node_id = config.node_id, broker_epoch, listen = %config.listen, advertised = %config.advertised_address,
                kafka = kafka_address.as_deref().unwrap_or("none"),
                voters = ?config.controller_voters, elapsed_ms = started.elapsed().as_millis() as u64, "rill broker ready"
            );
            let _ = ready_tx.send(true);
            tasks.push(tokio::spawn(groups.clone().run(shutdown.clone())));
            tasks.push(tokio::spawn(follow_metadata(metadata, partitions.clone())));
            tasks.push(tokio::spawn(upkeep(config.clone(), partitions.clone(), shutdown.clone())));
            tasks.push(tokio::spawn(keep_session(config.clone(), link.clone(), partitions.clone(), shutdown.clone())));
        }
        Err(e) if *shutdown.borrow() => tracing::info!("{e}"),
        Err(e) => {
            tracing::error!("{e:#}");
            // Nothing to drain: stop serving and report the failure.
            server.abort();
            if let Some(reload) = &reload {
                reload.abort();
            }
            if let Some(http) = &http {
                http.abort();
            }
            if let Some(kafka) = &kafka {
                kafka.abort();
            }
            return Err(e);
        }
    }

    let drain_limit = async {
        let _ = signalled.wait_for(|s| *s).await;
        tokio::time::sleep(Duration::from_millis(config.shutdown_timeout_ms)).await;
    };
    // The gRPC server returns once drained; then the Kafka listener, which stops on the same signal.
    let drained = async {
        let served = (&mut server).await;
        if let (Ok(Ok(())), Some(kafka)) = (&served, kafka.as_mut()) {
            let _ = kafka.await;
        }
        served
    };
    tokio::select! {
        served = drained => served?.map_err(|e| anyhow::anyhow!("gRPC server failed: {e}"))?,
        _ = drain_limit => tracing::warn!("in-flight requests did not finish in time; closing anyway"),
    }
    if let Some(kafka) = kafka {
        kafka.abort();
    }
    for task in tasks.into_iter().chain(reload).chain(http) {
        task.abort();
    }
    let closing = partitions.clone();
    tokio::task::spawn_blocking(move || closing.close_all()).await?;
    drop(core);
    // Stop the Raft node too: a stopped broker must not go on voting or heartbeating as a controller.
    if let Err(e) = quorum.shutdown().await {
        tracing::warn!(error = %e, "controller quorum did not stop cleanly");
    }
    tracing::info!("broker stopped cleanly");
    Ok(())
}

/// Registers with the active controller, waiting while the quorum elects one.
async fn register(link: &ClusterLink, address: &str, kafka_address: Option<&str>) -> anyhow::Result<u64> {
    loop {
        match link.register(address, kafka_address).await {
            Ok(epoch) => return Ok(epoch),
            Err(e) => tracing::warn!("cannot register yet, retrying: {e}"),
        }
    }
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

/// Heartbeats to the active controller and keeps the lease: when no heartbeat sent within the session timeout
/// was answered, the controller may already have fenced this broker and elected other leaders, so its
/// partitions stop acting as leaders until a heartbeat is answered again. The lease is measured from when a
/// heartbeat was sent, which is before the controller received it, so it runs out before the controller's
/// session does. The active controller's session checks run here too.
async fn keep_session(
    config: BrokerConfig,
    link: Arc<ClusterLink>,
    partitions: Arc<PartitionManager>,
    shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(config.heartbeat_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*shutdown.borrow() {
        tick.tick().await;
        let sent_ms = monotonic_ms();
        let heartbeat = tokio::time::timeout(Duration::from_millis(config.heartbeat_interval_ms * 2), link.heartbeat());
        match heartbeat.await {
            // The lease is renewed only once this broker's partitions reflect the metadata the controller had
            // when it answered: a broker back from a pause may have been fenced and its leaderships moved, and
            // must not lead again in its old epochs before it has applied that.
            Ok(Ok(Some(reply))) if partitions.applied_offset() >= reply.metadata_offset => {
                link.renew_lease(sent_ms, config.session_timeout_ms)
            }
            Ok(Ok(Some(reply))) => tracing::debug!(
                applied = partitions.applied_offset(),
                controller = reply.metadata_offset,
                "metadata behind the controller's: lease not renewed yet"
            ),
            Ok(Ok(None)) => {
                tracing::warn!("the controller does not know this broker's epoch: registering again");
                let kafka_address = config.kafka.as_ref().map(|kafka| kafka.advertised_address.as_str());
                match link.register(&config.advertised_address, kafka_address).await {
                    Ok(epoch) => {
                        tracing::info!(broker_epoch = epoch, "registered again");
                        link.renew_lease(sent_ms, config.session_timeout_ms);
                    }
                    Err(e) => tracing::warn!("cannot register again: {e}"),
                }
            }
            Ok(Err(e)) => tracing::debug!("heartbeat failed: {e}"),
            Err(_) => tracing::debug!("heartbeat timed out"),
        }
        let now = now_ms();
        partitions.set_lease(link.lease_valid(), now);
        link.controller().fence_expired(now).await;
        link.controller().balance_leaders(now, config.leader_balance_interval_ms).await;
    }
}

/// Interval flushes, roll by age, retention, ISR upkeep and recovery-point checkpoints.
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
