//! Following `ListRecordingsPage` tokens to the last page, apart from the
//! transport so that the loop is tested with a fake coordinator.

use std::collections::HashSet;
use std::future::Future;

use crate::error::ClientError;

/// One page and the token of the next (`None` on the last).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// This page's items, in the coordinator's order.
    pub items: Vec<T>,
    /// The token that asks for the next page; `None` on the last one.
    pub next: Option<String>,
}

/// Asks `fetch` for the page after `after` (the first page for `None`),
/// then for the page after each `next` token, until a page has none; the
/// items of every page, in order. A token that comes back twice (also the
/// `after` given) is [`ClientError::RepeatedPageToken`]: a coordinator bug
/// would otherwise loop forever.
pub async fn follow<T, F, Fut>(after: Option<String>, mut fetch: F) -> Result<Vec<T>, ClientError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, ClientError>>,
{
    let mut seen: HashSet<String> = after.iter().cloned().collect();
    let mut items = Vec::new();
    let mut after = after;
    loop {
        let page = fetch(after.take()).await?;
        items.extend(page.items);
        match page.next {
            None => return Ok(items),
            Some(token) if !seen.insert(token.clone()) => {
                return Err(ClientError::RepeatedPageToken(token))
            }
            Some(token) => after = Some(token),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A coordinator that pages `0..total` by `per_page`; tokens are the
    /// index of the next item.
    fn pages(total: u32, per_page: u32) -> impl Fn(Option<String>) -> Page<u32> {
        move |after| {
            let from: u32 = after.map_or(0, |t| t.parse().unwrap());
            let to = (from + per_page).min(total);
            Page {
                items: (from..to).collect(),
                next: (to < total).then(|| to.to_string()),
            }
        }
    }

    #[tokio::test]
    async fn every_page_is_asked_for_in_order_until_the_last() {
        let asked = RefCell::new(Vec::new());
        let coordinator = pages(2500, 1000);
        let all = follow(None, |after| {
            asked.borrow_mut().push(after.clone());
            let page = coordinator(after);
            async move { Ok(page) }
        })
        .await
        .unwrap();
        assert_eq!(all, (0..2500).collect::<Vec<_>>());
        assert_eq!(
            asked.into_inner(),
            [None, Some("1000".to_string()), Some("2000".to_string())]
        );
    }

    #[tokio::test]
    async fn starting_after_a_token_continues_from_there() {
        let coordinator = pages(30, 10);
        let all = follow(Some("10".to_string()), |after| {
            let page = coordinator(after);
            async move { Ok(page) }
        })
        .await
        .unwrap();
        assert_eq!(all, (10..30).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_token_seen_twice_is_an_error_not_a_loop() {
        // a -> b -> a: a cycle longer than one page.
        let err = follow(None, |after| {
            let next = match after.as_deref() {
                None => "a",
                Some("a") => "b",
                _ => "a",
            };
            async move {
                Ok(Page {
                    items: vec![1u8],
                    next: Some(next.to_string()),
                })
            }
        })
        .await
        .unwrap_err();
        assert!(
            matches!(&err, ClientError::RepeatedPageToken(t) if t == "a"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the coordinator returned the page token \"a\" twice"
        );

        // The token the caller started after counts as seen.
        let err = follow(Some("x".to_string()), |_| async {
            Ok(Page {
                items: Vec::<u8>::new(),
                next: Some("x".to_string()),
            })
        })
        .await
        .unwrap_err();
        assert!(matches!(err, ClientError::RepeatedPageToken(_)), "{err:?}");
    }

    #[tokio::test]
    async fn an_error_on_any_page_ends_the_walk() {
        let err = follow(None, |after| async move {
            match after {
                None => Ok(Page {
                    items: vec![1u8],
                    next: Some("2".to_string()),
                }),
                Some(_) => Err(ClientError::SubscriptionEnded),
            }
        })
        .await
        .unwrap_err();
        assert!(matches!(err, ClientError::SubscriptionEnded), "{err:?}");
    }
}
