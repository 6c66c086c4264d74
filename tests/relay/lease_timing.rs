//! Lease timing on PostgreSQL: a holder cut off from the database while
//! the broker still answers goes on handing records to its producer until
//! it notices the lost lease; the standby that the server gave the lease to
//! waits that long too before it reads the partitions, so nothing is
//! published twice or lost, and it publishes within the stated bound.
//!
//! The holder reaches the database through a [`TcpProxy`]: its lease's
//! connection goes silent (black-holed) and the server ends the lease's
//! session (as it does for a terminated backend, a restarted server, or,
//! with the lease's TCP settings, a client silent for
//! `PgLease::SERVER_DROP_BOUND`), while its other connections only
//! slow down, so that pages it asked for before the cut arrive afterwards
//! and it hands them to its producer late, as a holder whose reads were in
//! flight does.

use std::time::{Duration, Instant};

use annals::OutboxSource;
use annals_kafka::ShardRole;
use annals_postgres::{PgEventStore, PgLease, PgOutbox};
use annals_tests::kafka::{brokers, create_topic, unique_topic};
use annals_tests::postgres::{connect, database_url, server_address};
use annals_tests::proxy::{Flow, TcpProxy};

use crate::common::{
    MESSAGE_TIMEOUT, Writer, assert_exactly_once_in_order, init_tracing, postgres_store, relay,
    slot, unique_name, wait_for_status,
};

/// How much slower the cut-off holder's other connections get: each round
/// trip takes twice this, longer than the grace that ignored the lease loss
/// bound and shorter than that bound.
const SLOW: Duration = Duration::from_millis(1_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cut_off_from_postgres_is_waited_out_by_its_standby() {
    let _slot = slot().await;
    init_tracing();
    let (schema, store) = postgres_store().await;
    let proxy = TcpProxy::start(&server_address());
    let cut_off_name = format!("{}-cut-off", schema.application_name());
    // A relay's own reads do not wait on the horizon (the tests' stores
    // do): a page asked for before the cut comes back one slow round trip
    // later.
    let cut_off_config = schema
        .config_through(proxy.address(), &cut_off_name)
        .with_horizon_wait(Duration::ZERO);
    let cut_off_store = PgEventStore::connect(cut_off_config)
        .await
        .expect("connecting through the proxy");
    let topic = unique_topic("relay-lease-timing");
    create_topic(brokers(), &topic, 2).await;
    let name = unique_name("lease-timing");

    // A holder that saves no checkpoint while cut off (a save on the dead
    // lease connection would hold it up, which hides the window rather than
    // closing it: the argument must hold for any interval).
    let holder = relay(PgOutbox::new(&cut_off_store), brokers(), &name)
        .checkpoint_interval(Duration::from_secs(3_600))
        .prune_batch(1_000_000)
        .start()
        .unwrap();
    let writing = Writer::new(store.clone(), &topic, 40).spawn(8_000, 2, Some(400.0));
    wait_for_status(
        &holder,
        Duration::from_secs(30),
        "the holder publishes",
        |status| status.published() >= 1_000,
    )
    .await;
    let standby = relay(PgOutbox::new(&store), brokers(), &name)
        .start()
        .unwrap();
    let grace = MESSAGE_TIMEOUT + PgOutbox::new(&store).lease_loss_bound();
    assert_eq!(grace, MESSAGE_TIMEOUT + PgLease::LOSS_BOUND);

    // The cut: the lease's connection goes silent, the others slow down,
    // and the server ends the lease's session.
    let admin = connect(database_url()).await.expect("an admin connection");
    let lease = admin
        .query_one(
            "SELECT a.pid, a.client_port FROM pg_stat_activity a \
             JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted \
             WHERE a.application_name = $1",
            &[&cut_off_name],
        )
        .await
        .expect("the holder's lease session");
    let (pid, port): (i32, i32) = (lease.get(0), lease.get(1));
    proxy.set_all(Flow::Delay(SLOW));
    assert!(proxy.set_connection(port as u16, Flow::BlackHole));
    let cut = Instant::now();
    let terminated: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);

    // The holder notices within the lease loss bound.
    wait_for_status(
        &holder,
        PgLease::LOSS_BOUND + Duration::from_secs(3),
        "the cut-off holder notices the lost lease",
        |status| status.shards[0].role != ShardRole::Publishing,
    )
    .await;
    let noticed = cut.elapsed();
    // The standby takes the lease at once, waits the grace, and publishes.
    wait_for_status(
        &standby,
        grace + Duration::from_secs(5),
        "the standby publishes within the grace",
        |status| status.sent() > 0,
    )
    .await;
    let publishing = cut.elapsed();
    assert!(
        publishing >= grace,
        "the standby waited the grace ({grace:?}) before it read the partitions: {publishing:?}"
    );
    let written = writing.await.unwrap();
    standby
        .wait_until_drained(Duration::from_secs(60))
        .await
        .expect("the standby drains the outbox");
    let holder_status = holder.status();
    holder.abort().await;
    let standby_status = standby.stop().await;
    eprintln!(
        "lost lease noticed after {noticed:?}, standby publishing after {publishing:?}; \
         holder: {holder_status:?}; standby: {standby_status:?}"
    );
    assert_exactly_once_in_order(brokers(), &topic, &name, 1, &written).await;
    drop(proxy);
}
