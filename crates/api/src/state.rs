//! What the HTTP surface keeps: the node it serves, and the request budgets per app and
//! tenant.

use crate::guard::Buckets;
use node::Node;
use std::sync::Arc;

pub struct Api {
    pub node: Arc<Node>,
    pub buckets: Buckets,
}
