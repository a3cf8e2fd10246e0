//! Settling a reserved order: the charge, then `confirmed` (and the
//! confirmation handed over) or the stock released; what the charge job,
//! a `Prefer: wait` request and the reconciler share.

use axum::http::{Method, StatusCode};
use ee_core::Problem;
use ee_db::params;

use super::{Order, Settle, find_order, retry_later, update};
use crate::common::{Deps, now_ms};
use crate::services::notification::{Confirmation, Notifier};
use crate::services::payment::Payment;

/// Puts the stock of `order` back (safe to repeat).
pub(crate) async fn release(deps: &Deps, order: &Order) -> Result<(), Problem> {
    deps.upstreams
        .call::<(), serde_json::Value>(
            "product",
            Method::DELETE,
            &format!("/v1/reservations/{}", order.id),
            None,
            &[],
        )
        .await
        .map(drop)
        .map_err(|p| retry_later(order, "releasing the stock", p.detail()))
}

/// Charges a reserved order and records the outcome: `confirmed` (and the
/// confirmation handed over) or `payment_failed` (and the stock released).
/// An error is a step whose outcome is unknown (the 503 problem to answer);
/// the order is then still `pending` and settling it again is safe.
pub(super) async fn settle(
    deps: &Deps,
    notifier: &Notifier,
    job: Settle,
) -> Result<Order, Problem> {
    let Settle { mut order } = job;
    let up = &deps.upstreams;
    let Some(payment_token) = payment_token(deps, &order.id).await? else {
        // Settled already (its token goes once it is), or never recorded
        // whole: what is stored stands while it is not pending.
        let stored = find_order(deps, &order.id).await?;
        if stored.status != "pending" {
            return Ok(stored);
        }
        release(deps, &order).await?;
        order.status = "failed".to_owned();
        order.failure = Some("no card token on record for this order".to_owned());
        order.updated_ms = now_ms();
        return recorded(deps, order).await;
    };
    // Charge (the payment service keeps one payment per order).
    let charge = serde_json::json!({
        "order_id": order.id,
        "amount_minor": order.total_minor,
        "currency": order.currency,
        "token": payment_token,
    });
    let key = format!("\"order-{}\"", order.id);
    let payment = match up
        .call::<_, Payment>(
            "payment",
            Method::POST,
            "/v1/payments",
            Some(&charge),
            &[("idempotency-key", key)],
        )
        .await
    {
        Ok((_, payment)) => payment,
        // The charge itself refused as invalid (400/422 from validation,
        // before anything ran): nothing was charged and asking again gets
        // the same answer. The stock goes back; the order `failed`. Not an
        // idempotency refusal (the key used before with another body):
        // that one may stand for a charge made, so it stays unknown.
        Err(p)
            if matches!(
                p.status(),
                StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
            ) && !p.type_uri().contains("/idempotency/") =>
        {
            release(deps, &order).await?;
            order.status = "failed".to_owned();
            order.failure = Some(format!(
                "the payment service refused the charge: {}",
                p.detail().unwrap_or("no detail")
            ));
            order.updated_ms = now_ms();
            return recorded(deps, order).await;
        }
        // Anything else (a timeout, a 5xx, 409 "the first attempt is still
        // running"): the card may have been charged. Keep the stock and ask
        // for a retry, which asks the payment service again.
        Err(p) => return Err(retry_later(&order, "the payment service", p.detail())),
    };
    conclude(deps, notifier, order, payment).await
}

/// Records what `payment` says of the reserved `order`: captured →
/// `confirmed` and the confirmation handed over; otherwise the
/// stock released and `payment_failed`. An error is a step whose outcome is
/// unknown; the order is then still `pending` and doing it again is safe.
pub(crate) async fn conclude(
    deps: &Deps,
    notifier: &Notifier,
    mut order: Order,
    payment: Payment,
) -> Result<Order, Problem> {
    order.payment_id = Some(payment.id.clone());
    if payment.status == "captured"
        && (payment.amount_minor != order.total_minor || payment.currency != order.currency)
    {
        // Not this order's charge (the payment service refuses a second
        // charge with another amount; this is the belt to its braces):
        // never confirmed on it.
        tracing::error!(order = %order.id, payment = %payment.id, "the payment on record does not match the order");
        release(deps, &order).await?;
        order.status = "failed".to_owned();
        order.failure = Some("the payment on record does not match the order".to_owned());
        order.updated_ms = now_ms();
        return recorded(deps, order).await;
    }
    if payment.status != "captured" {
        // Declined: the stock goes back before the order says so. If the
        // stock cannot be put back now, the order stays pending and a retry
        // puts it back (releasing is safe to repeat).
        release(deps, &order).await?;
        order.status = "payment_failed".to_owned();
        order.failure = Some(payment.reason.unwrap_or_else(|| "declined".to_owned()));
        order.updated_ms = now_ms();
        return recorded(deps, order).await;
    }

    order.status = "confirmed".to_owned();
    order.updated_ms = now_ms();
    let confirmation = Confirmation {
        order_id: order.id.clone(),
        user_id: order.user_id.clone(),
        total_minor: order.total_minor,
        currency: order.currency.clone(),
    };
    // The order is paid: its record and its confirmation go together. If
    // either fails the answer is an error and a retry does both again (the
    // confirmation job's id is the order's: added once).
    let (updated, handed) = tokio::join!(
        update(deps, &order),
        notifier.order_confirmed(&confirmation)
    );
    let updated = match updated {
        Ok(n) => n,
        Err(p) => {
            return Err(retry_later(
                &order,
                "recording the confirmed order",
                p.detail(),
            ));
        }
    };
    if let Err(p) = handed {
        return Err(retry_later(&order, "the notification queue", p.detail()));
    }
    forget_token(deps, &order.id).await;
    if updated == 0 {
        // Settled meanwhile (by another attempt): what is stored stands.
        return find_order(deps, &order.id).await;
    }
    Ok(order)
}

/// Records how `order` ended: it, or what is stored when the order was
/// settled meanwhile (by another attempt). Its card token goes.
pub(crate) async fn recorded(deps: &Deps, order: Order) -> Result<Order, Problem> {
    let updated = update(deps, &order).await?;
    forget_token(deps, &order.id).await;
    if updated == 0 {
        return find_order(deps, &order.id).await;
    }
    Ok(order)
}

/// The card token of a pending order.
async fn payment_token(deps: &Deps, order_id: &str) -> Result<Option<String>, Problem> {
    Ok(deps
        .db
        .query_opt(
            "SELECT token FROM order_payment_tokens WHERE order_id = $1",
            params![order_id.to_owned()],
        )
        .await?
        .map(|row| row.get::<String>("token"))
        .transpose()?)
}

/// Drops a settled order's card token (best effort: a token left behind
/// belongs to an order that is no longer pending, and charges nothing).
async fn forget_token(deps: &Deps, order_id: &str) {
    if let Err(e) = deps
        .db
        .execute(
            "DELETE FROM order_payment_tokens WHERE order_id = $1",
            params![order_id.to_owned()],
        )
        .await
    {
        tracing::warn!(order = %order_id, error = %e, "card token not deleted");
    }
}
