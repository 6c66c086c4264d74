//! The annals e-commerce example: an order service on in-memory backends,
//! run as a short narrated scenario.
//!
//! ```text
//! cargo run -p ecommerce
//! ```

use std::time::Duration;

use annals::prelude::*;
use annals::{
    CommandContext, CommandError, GlobalPosition, IntegrationEvent, MemoryBus, MemoryEventStore,
    MemoryOutboxRelay, Repository, SnapshotPolicy,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use ecommerce::order::{Order, OrderCommand, OrderEvent, OrderLine};

/// The topic other services read order events from.
const ORDERS_TOPIC: &str = "orders";

/// What other services learn when an order is confirmed: the public contract,
/// kept apart from the domain event so that either can change.
#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
#[event(name = "OrderConfirmed", version = 1)]
struct OrderConfirmedMessage {
    order_id: String,
    total_cents: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("annals e-commerce example (in-memory store and bus)\n");
    let store = MemoryEventStore::new();
    let bus = MemoryBus::new();
    let orders = Repository::<Order, _>::new(store.clone())
        .with_snapshots(SnapshotPolicy::Every(50))
        .with_integration_events(|pending| match pending.event {
            OrderEvent::Confirmed { total_cents } => IntegrationEvent::new(
                ORDERS_TOPIC,
                &OrderConfirmedMessage {
                    order_id: pending.aggregate_id.to_owned(),
                    total_cents: *total_cents,
                },
            )
            .map(Some),
            _ => Ok(None),
        });
    let relay = MemoryOutboxRelay::new("orders-relay", store.clone(), bus.clone()).spawn();

    step("Alice places order o-1001");
    let placed = orders
        .execute(
            "o-1001",
            &OrderCommand::Place {
                customer_id: "alice".into(),
            },
        )
        .await?;
    println!("   -> {:?} at version {}", placed.events, placed.version);

    step("She adds a book and three pens");
    for line in [
        OrderLine {
            sku: "book-rust".into(),
            quantity: 1,
            unit_price_cents: 2_500,
        },
        OrderLine {
            sku: "pen-blue".into(),
            quantity: 3,
            unit_price_cents: 199,
        },
    ] {
        let added = orders
            .execute("o-1001", &OrderCommand::AddLine(line))
            .await?;
        println!("   -> version {}: {:?}", added.version, added.events[0]);
    }

    step("Bob tries to confirm an order he never filled (o-1002)");
    orders
        .execute(
            "o-1002",
            &OrderCommand::Place {
                customer_id: "bob".into(),
            },
        )
        .await?;
    match orders.execute("o-1002", &OrderCommand::Confirm).await {
        Err(CommandError::Rejected(reason)) => println!("   -> refused: {reason}"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }

    step("Alice confirms o-1001; the web client sends the request twice");
    let request = CommandContext::new()
        .with_command_id(Uuid::now_v7())
        .with_user("alice");
    let confirmed = orders
        .execute_with("o-1001", &OrderCommand::Confirm, request.clone())
        .await?;
    println!(
        "   -> {:?} at version {}",
        confirmed.events[0], confirmed.version
    );
    let resent = orders
        .execute_with("o-1001", &OrderCommand::Confirm, request)
        .await?;
    println!(
        "   -> the resend is recognised (duplicate: {}), nothing appended; version stays {}",
        resent.duplicate, resent.version
    );

    step("Alice changes her mind, too late");
    match orders
        .execute(
            "o-1001",
            &OrderCommand::Cancel {
                reason: "changed my mind".into(),
            },
        )
        .await
    {
        Err(CommandError::Rejected(reason)) => println!("   -> refused: {reason}"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }

    step("Bob cancels o-1002");
    let cancelled = orders
        .execute(
            "o-1002",
            &OrderCommand::Cancel {
                reason: "nothing to buy".into(),
            },
        )
        .await?;
    println!(
        "   -> {:?} at version {} (not published: the domain keeps it)",
        cancelled.events[0], cancelled.version
    );

    step("The shipping service reads the orders topic");
    let mut shipping = bus.consumer("shipping", ORDERS_TOPIC);
    let delivered = shipping.next_batch(10, Duration::from_secs(5)).await;
    for delivery in &delivered {
        let message = &delivery.message;
        let body: OrderConfirmedMessage = message.payload.decode()?;
        println!(
            "   -> offset {}: {} v{} for {} ({} cents), message id {}, correlation {}",
            delivery.offset,
            message.event_type,
            message.event_version,
            body.order_id,
            body.total_cents,
            message.message_id,
            message
                .metadata
                .correlation_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
        );
        shipping.commit(delivery);
    }
    if delivered.len() != 1 {
        return Err(format!("expected one message, got {}", delivered.len()).into());
    }

    step("Everything that happened, in global order");
    for event in store.read_all(GlobalPosition::START, 100).await? {
        println!(
            "   {:>7}  {:<8} v{}  {}",
            event.position.to_string(),
            event.stream.as_str(),
            event.version,
            event.event_type
        );
    }
    let order = orders.load("o-1001").await?;
    println!(
        "\no-1001 is {:?} with {} lines, total {} cents, at version {}.",
        order.state.status,
        order.state.lines.len(),
        order.state.total_cents(),
        order.version
    );
    relay.abort();
    Ok(())
}

fn step(text: &str) {
    println!("* {text}");
}
