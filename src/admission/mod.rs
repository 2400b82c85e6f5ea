//! Admission: everything decided from a request's head before anything is forwarded — is the
//! request well formed, which endpoint, may its origin call it (CORS), who is calling, may
//! they, and are anonymous callers within their limits — and the one [`Rejection`] type for
//! every answer the proxy writes itself.

mod client_ip;
pub(crate) mod cors;
mod decide;
mod names;
mod rejection;
pub(crate) mod routes;
mod settings;

pub use client_ip::ClientIpPolicy;
pub use cors::CorsPolicy;
pub use decide::{Admission, Caller, Decision, Gate};
pub use names::{AnonymousPolicy, NameRefused, NameRules};
pub use rejection::{Rejection, Reply};
pub use routes::{endpoint_label, is_grpc, path_of, EndpointKind, PathRejection};
pub use settings::{AdmissionSettings, AnonymousSettings, BodyLimits, FailedAttemptsSettings};
