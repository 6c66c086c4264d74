//! The order aggregate: placed, filled with lines, then confirmed or
//! cancelled.

use annals::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Price of one, in cents.
    pub unit_price_cents: u64,
}

impl OrderLine {
    /// Quantity times unit price.
    pub fn total_cents(&self) -> u64 {
        u64::from(self.quantity) * self.unit_price_cents
    }
}

/// What can be asked of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    /// Open the order for a customer.
    Place {
        /// Who orders.
        customer_id: String,
    },
    /// Add a line to an open order.
    AddLine(OrderLine),
    /// Close the order for fulfilment.
    Confirm,
    /// Abandon the order.
    Cancel {
        /// Why.
        reason: String,
    },
}

/// What happened to an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
pub enum OrderEvent {
    /// The order was opened.
    #[event(name = "OrderPlaced")]
    Placed {
        /// Who orders.
        customer_id: String,
    },
    /// A line was added.
    #[event(name = "OrderLineAdded")]
    LineAdded(OrderLine),
    /// The order was confirmed with this total.
    #[event(name = "OrderConfirmed")]
    Confirmed {
        /// Sum of the lines, in cents.
        total_cents: u64,
    },
    /// The order was cancelled.
    #[event(name = "OrderCancelled")]
    Cancelled {
        /// Why.
        reason: String,
    },
}

/// Why an order refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// `Place` on an order that exists.
    #[error("the order was placed already")]
    AlreadyPlaced,
    /// Anything but `Place` on an order that does not exist.
    #[error("the order has not been placed")]
    NotPlaced,
    /// A change to an order that is confirmed or cancelled.
    #[error("the order is {0} and can no longer change")]
    Closed(&'static str),
    /// A line with quantity 0.
    #[error("a line needs a quantity of at least 1")]
    ZeroQuantity,
    /// `Confirm` on an order without lines.
    #[error("an order without lines cannot be confirmed")]
    Empty,
    /// A customer id that is empty.
    #[error("the customer id is empty")]
    NoCustomer,
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Not placed yet.
    #[default]
    New,
    /// Placed, taking lines.
    Open,
    /// Confirmed for fulfilment.
    Confirmed,
    /// Cancelled.
    Cancelled,
}

/// The state of an order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Where it is in its life.
    pub status: OrderStatus,
    /// Who ordered.
    pub customer_id: String,
    /// Its lines.
    pub lines: Vec<OrderLine>,
}

impl Order {
    /// Sum of the lines, in cents.
    pub fn total_cents(&self) -> u64 {
        self.lines.iter().map(OrderLine::total_cents).sum()
    }

    fn ensure_open(&self) -> Result<(), OrderError> {
        match self.status {
            OrderStatus::New => Err(OrderError::NotPlaced),
            OrderStatus::Open => Ok(()),
            OrderStatus::Confirmed => Err(OrderError::Closed("confirmed")),
            OrderStatus::Cancelled => Err(OrderError::Closed("cancelled")),
        }
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    fn handle(&self, command: &OrderCommand, _: &()) -> Result<Vec<OrderEvent>, OrderError> {
        match command {
            OrderCommand::Place { customer_id } => {
                if self.status != OrderStatus::New {
                    return Err(OrderError::AlreadyPlaced);
                }
                if customer_id.trim().is_empty() {
                    return Err(OrderError::NoCustomer);
                }
                Ok(vec![OrderEvent::Placed {
                    customer_id: customer_id.clone(),
                }])
            }
            OrderCommand::AddLine(line) => {
                self.ensure_open()?;
                if line.quantity == 0 {
                    return Err(OrderError::ZeroQuantity);
                }
                Ok(vec![OrderEvent::LineAdded(line.clone())])
            }
            OrderCommand::Confirm => {
                self.ensure_open()?;
                if self.lines.is_empty() {
                    return Err(OrderError::Empty);
                }
                Ok(vec![OrderEvent::Confirmed {
                    total_cents: self.total_cents(),
                }])
            }
            OrderCommand::Cancel { reason } => {
                self.ensure_open()?;
                Ok(vec![OrderEvent::Cancelled {
                    reason: reason.clone(),
                }])
            }
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed { customer_id } => {
                self.status = OrderStatus::Open;
                self.customer_id.clone_from(customer_id);
            }
            OrderEvent::LineAdded(line) => self.lines.push(line.clone()),
            OrderEvent::Confirmed { .. } => self.status = OrderStatus::Confirmed,
            OrderEvent::Cancelled { .. } => self.status = OrderStatus::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use annals::testing::AggregateTest;

    use super::*;

    fn line(sku: &str, quantity: u32, unit_price_cents: u64) -> OrderLine {
        OrderLine {
            sku: sku.into(),
            quantity,
            unit_price_cents,
        }
    }

    fn placed() -> OrderEvent {
        OrderEvent::Placed {
            customer_id: "c-1".into(),
        }
    }

    #[test]
    fn a_new_order_can_be_placed_once() {
        AggregateTest::<Order>::new()
            .when(OrderCommand::Place {
                customer_id: "c-1".into(),
            })
            .then([placed()]);
        AggregateTest::<Order>::new()
            .given([placed()])
            .when(OrderCommand::Place {
                customer_id: "c-2".into(),
            })
            .then_error(OrderError::AlreadyPlaced);
        AggregateTest::<Order>::new()
            .when(OrderCommand::Place {
                customer_id: " ".into(),
            })
            .then_error(OrderError::NoCustomer);
    }

    #[test]
    fn lines_need_an_open_order_and_a_quantity() {
        AggregateTest::<Order>::new()
            .when(OrderCommand::AddLine(line("book", 1, 100)))
            .then_error(OrderError::NotPlaced);
        AggregateTest::<Order>::new()
            .given([placed()])
            .when(OrderCommand::AddLine(line("book", 0, 100)))
            .then_error(OrderError::ZeroQuantity);
        let order = AggregateTest::<Order>::new()
            .given([placed()])
            .when(OrderCommand::AddLine(line("book", 2, 1250)))
            .then([OrderEvent::LineAdded(line("book", 2, 1250))]);
        assert_eq!(order.total_cents(), 2500);
    }

    #[test]
    fn confirming_totals_the_lines() {
        AggregateTest::<Order>::new()
            .given([
                placed(),
                OrderEvent::LineAdded(line("book", 2, 1250)),
                OrderEvent::LineAdded(line("pen", 3, 199)),
            ])
            .when(OrderCommand::Confirm)
            .then([OrderEvent::Confirmed { total_cents: 3097 }]);
        AggregateTest::<Order>::new()
            .given([placed()])
            .when(OrderCommand::Confirm)
            .then_error(OrderError::Empty);
    }

    #[test]
    fn a_closed_order_does_not_change() {
        let confirmed = [
            placed(),
            OrderEvent::LineAdded(line("book", 1, 100)),
            OrderEvent::Confirmed { total_cents: 100 },
        ];
        AggregateTest::<Order>::new()
            .given(confirmed.clone())
            .when(OrderCommand::Cancel {
                reason: "late".into(),
            })
            .then_error(OrderError::Closed("confirmed"));
        AggregateTest::<Order>::new()
            .given([
                placed(),
                OrderEvent::Cancelled {
                    reason: "changed mind".into(),
                },
            ])
            .when(OrderCommand::AddLine(line("book", 1, 100)))
            .then_error(OrderError::Closed("cancelled"));
    }
}
