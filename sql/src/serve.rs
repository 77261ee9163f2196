//! The read-only Postgres-wire server (`lineage sql --serve`): DataFusion behind
//! `datafusion-postgres`, a [`ReadOnlyHook`] in front of every statement, a
//! statement timeout around every query's execution and its result rows,
//! SCRAM-SHA-256 password authentication when a password is configured, and TLS
//! (rustls, with SCRAM channel binding) when a certificate and key are given.

use std::fmt::Debug;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth};
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::portal::Portal;
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{QueryResponse, Response};
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::pgwire::tokio::tokio_rustls::rustls;
use datafusion_postgres::pgwire::tokio::TlsAcceptor;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::{Sink, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use crate::{ServeConfig, SqlError};

/// Refuses every statement that is not a query, `EXPLAIN`, `SHOW`, `SET` or a
/// transaction/cursor statement: the lineage tables are read-only over the wire.
#[derive(Debug, Default)]
pub struct ReadOnlyHook;

impl ReadOnlyHook {
    /// True when `statement` only reads.
    pub fn allows(statement: &Statement) -> bool {
        match statement {
            Statement::Explain { statement, .. } => Self::allows(statement),
            // Every connection shares one DataFusion session: a SET of an engine
            // setting (memory limit, spill directory, target partitions) would change
            // it for everyone. Only the session variables Postgres clients send are
            // accepted, and they change nothing that is shared.
            Statement::Set(_) | Statement::Reset(_) => harmless_set(&statement.to_string()),
            Statement::Query(_)
            | Statement::ExplainTable { .. }
            | Statement::ShowFunctions { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowCreate { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::ShowDatabases { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowViews { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::Discard { .. }
            | Statement::Deallocate { .. } => true,
            _ => false,
        }
    }

    fn refusal(statement: &Statement) -> PgWireError {
        let text = statement.to_string();
        if matches!(statement, Statement::Set(_) | Statement::Reset(_)) {
            return PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_string(),
                "42501".to_string(), // insufficient_privilege
                format!(
                    "`{text}` is refused: the server's settings are shared by every \
                     connection; only {} may be set",
                    HARMLESS_SETTINGS.join(", ")
                ),
            )));
        }
        let verb = text
            .split_whitespace()
            .next()
            .unwrap_or("this")
            .to_uppercase();
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_string(),
            "25006".to_string(), // read_only_sql_transaction
            format!("lineage tables are read-only: {verb} is not allowed (only queries)"),
        )))
    }
}

/// The session variables a client may `SET` (what psql, JDBC, Grafana and Metabase
/// send on connect); anything else, `datafusion.*` above all, is refused.
const HARMLESS_SETTINGS: &[&str] = &[
    "application_name",
    "client_encoding",
    "client_min_messages",
    "datestyle",
    "extra_float_digits",
    "intervalstyle",
    "search_path",
    "time zone",
    "timezone",
];

/// True when a `SET`/`RESET` statement (as text) names only a harmless variable.
fn harmless_set(text: &str) -> bool {
    let lower = text.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("set ")
        .or_else(|| lower.strip_prefix("reset "))
        .unwrap_or("");
    let rest = rest
        .trim_start()
        .strip_prefix("session ")
        .or_else(|| rest.trim_start().strip_prefix("local "))
        .unwrap_or(rest)
        .trim_start();
    if rest.starts_with("time zone") {
        return true;
    }
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .collect();
    HARMLESS_SETTINGS.contains(&name.as_str())
}

#[async_trait]
impl QueryHook for ReadOnlyHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        (!Self::allows(statement)).then(|| Err(Self::refusal(statement)))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        (!Self::allows(statement)).then(|| Err(Self::refusal(statement)))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        (!Self::allows(statement)).then(|| Err(Self::refusal(statement)))
    }
}

/// The one password of the server, as a SCRAM-SHA-256 verifier: salted and hashed
/// once at start (as Postgres stores it), so the clear text is not kept around.
#[derive(Debug)]
struct ScramVerifier {
    user: Option<String>,
    salt: Vec<u8>,
    salted_password: Vec<u8>,
}

/// SCRAM iteration count (the Postgres default; RFC 7677's minimum).
const SCRAM_ITERATIONS: usize = 4096;

impl ScramVerifier {
    fn new(user: Option<String>, password: &str) -> Self {
        let salt = random_salt().to_vec();
        let salted_password = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Self {
            user,
            salt,
            salted_password,
        }
    }
}

#[async_trait]
impl AuthSource for ScramVerifier {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        if self.user.as_deref().is_some_and(|u| u != user) {
            return Err(PgWireError::InvalidPassword(user.to_owned()));
        }
        Ok(Password::new(
            Some(self.salt.clone()),
            self.salted_password.clone(),
        ))
    }
}

fn random_salt() -> [u8; 16] {
    // A per-process random key (std's hasher seed) mixed with the clock: a salt
    // only has to be unique, not secret.
    let mut salt = [0u8; 16];
    for (i, chunk) in salt.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    salt
}

struct OpenStartup;

impl NoopStartupHandler for OpenStartup {}

/// No authentication, or SCRAM-SHA-256 (a fresh handler per connection: it keeps
/// the connection's SASL state); with TLS configured, a client that did not
/// negotiate TLS is refused before it may authenticate.
struct Startup {
    auth: StartupAuth,
    require_tls: bool,
}

enum StartupAuth {
    Open(OpenStartup),
    Scram(Box<SASLAuthStartupHandler<DefaultServerParameterProvider>>),
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.require_tls && !client.is_secure() {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".to_string(),
                "28000".to_string(), // invalid_authorization_specification
                "this server only accepts TLS connections (sslmode=require or stricter)"
                    .to_string(),
            ))));
        }
        match &self.auth {
            StartupAuth::Open(h) => h.on_startup(client, message).await,
            StartupAuth::Scram(h) => h.on_startup(client, message).await,
        }
    }
}

/// Runs every statement through `datafusion-postgres` with a deadline: planning,
/// execution and every result row must come before it, or the statement fails
/// with SQLSTATE 57014 and its execution is dropped (DataFusion stops its tasks).
struct TimedSession {
    inner: Arc<DfSessionService>,
    timeout: Duration,
}

fn statement_timeout_error(timeout: Duration) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        "57014".to_string(), // query_canceled
        format!(
            "canceling statement due to statement timeout ({} s; the server's \
             --statement-timeout)",
            timeout.as_secs_f64()
        ),
    )))
}

impl TimedSession {
    /// `response` with its rows cut off at `deadline` by a timeout error.
    fn rows_until(
        response: Response,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Response {
        let Response::Query(query) = response else {
            return response;
        };
        let QueryResponse {
            command_tag,
            row_schema,
            data_rows,
            ..
        } = query;
        let rows = futures::stream::unfold(Some(data_rows), move |rows| async move {
            let mut rows = rows?;
            match tokio::time::timeout_at(deadline, rows.next()).await {
                Ok(Some(row)) => Some((row, Some(rows))),
                Ok(None) => None,
                // Dropping `rows` drops the DataFusion stream and stops its work.
                Err(_) => Some((Err(statement_timeout_error(timeout)), None)),
            }
        });
        let mut timed = QueryResponse::new(row_schema, rows);
        timed.set_command_tag(&command_tag);
        Response::Query(timed)
    }
}

#[async_trait]
impl SimpleQueryHandler for TimedSession {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let responses = tokio::time::timeout_at(
            deadline,
            SimpleQueryHandler::do_query(self.inner.as_ref(), client, query),
        )
        .await
        .map_err(|_| statement_timeout_error(self.timeout))??;
        Ok(responses
            .into_iter()
            .map(|r| Self::rows_until(r, deadline, self.timeout))
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for TimedSession {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = <DfSessionService as ExtendedQueryHandler>::QueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.inner.query_parser()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let response = tokio::time::timeout_at(
            deadline,
            ExtendedQueryHandler::do_query(self.inner.as_ref(), client, portal, max_rows),
        )
        .await
        .map_err(|_| statement_timeout_error(self.timeout))??;
        Ok(Self::rows_until(response, deadline, self.timeout))
    }
}

struct Handlers {
    session: Arc<TimedSession>,
    auth: Option<Arc<ScramVerifier>>,
    /// The server certificate (PEM) when TLS is on: SCRAM binds to it
    /// (SCRAM-SHA-256-PLUS), and plain-text clients are refused.
    tls_cert_pem: Option<Vec<u8>>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(
        &self,
    ) -> Arc<impl datafusion_postgres::pgwire::api::query::SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(
        &self,
    ) -> Arc<impl datafusion_postgres::pgwire::api::query::ExtendedQueryHandler> {
        self.session.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        let auth = match &self.auth {
            None => StartupAuth::Open(OpenStartup),
            Some(verifier) => {
                let mut scram = ScramAuth::new(verifier.clone());
                scram.set_iterations(SCRAM_ITERATIONS);
                if let Some(pem) = &self.tls_cert_pem {
                    // Checked at start (`tls_acceptor`), so this cannot fail here; a
                    // failure would only lose channel binding, not TLS.
                    if let Err(e) = scram.configure_certificate(pem) {
                        tracing::warn!(error = %e, "SCRAM channel binding unavailable");
                    }
                }
                StartupAuth::Scram(Box::new(
                    SASLAuthStartupHandler::new(
                        Arc::new(DefaultServerParameterProvider::default()),
                    )
                    .with_scram(scram),
                ))
            }
        };
        Arc::new(Startup {
            auth,
            require_tls: self.tls_cert_pem.is_some(),
        })
    }
}

/// A running server: where it listens and how to stop it.
pub struct ServeHandle {
    /// The address it listens on (the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ServeHandle {
    /// Runs until the accept loop stops (it does not, unless aborted).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// Stops accepting connections.
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Starts the read-only Postgres-wire server over `ctx` on `config.listen`.
pub async fn serve(ctx: SessionContext, config: &ServeConfig) -> Result<ServeHandle, SqlError> {
    let serve_err = |e: String| SqlError::Serve(config.listen.clone(), e);
    let ctx = Arc::new(ctx);
    // pg_catalog lets psql's \d, Grafana and Metabase list tables and columns.
    setup_pg_catalog(
        &ctx,
        "datafusion",
        datafusion_postgres::auth::AuthManager::new(),
    )
    .map_err(|e| serve_err(format!("pg_catalog: {e}")))?;
    let hooks: Vec<Arc<dyn QueryHook>> = vec![
        Arc::new(ReadOnlyHook),
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ];
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key).map_err(serve_err)?),
        (None, None) => None,
        _ => {
            return Err(serve_err(
                "TLS needs both a certificate (--tls-cert) and its key (--tls-key)".into(),
            ))
        }
    };
    let handlers = Arc::new(Handlers {
        session: Arc::new(TimedSession {
            inner: Arc::new(DfSessionService::new_with_hooks(ctx, hooks)),
            timeout: Duration::from_secs_f64(config.statement_timeout_secs.max(0.001)),
        }),
        auth: config
            .password
            .as_ref()
            .map(|p| Arc::new(ScramVerifier::new(config.user.clone(), p))),
        tls_cert_pem: tls.as_ref().map(|(_, pem)| pem.clone()),
    });
    let tls = tls.map(|(acceptor, _)| acceptor);
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|e| serve_err(e.to_string()))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| serve_err(e.to_string()))?;
    if !local_addr.ip().is_loopback() {
        if config.password.is_none() {
            return Err(serve_err(format!(
                "refusing to serve the lineage tables on {local_addr}, reachable from other \
                 hosts, without a password: set one (--password-env VAR), or listen on 127.0.0.1"
            )));
        }
        if tls.is_none() {
            tracing::warn!(
                %local_addr,
                "serving beyond loopback without TLS: the password is safe (SCRAM), but \
                 queries and results cross the network in clear text; give --tls-cert and --tls-key"
            );
        }
    }
    tracing::info!(
        %local_addr,
        password = config.password.is_some(),
        tls = tls.is_some(),
        statement_timeout_secs = config.statement_timeout_secs,
        "postgres-wire server listening (read-only)"
    );
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((socket, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "postgres connection refused: max_connections reached");
                        drop(socket);
                        continue;
                    };
                    let handlers = handlers.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        if let Err(e) = datafusion_postgres::pgwire::tokio::process_socket(
                            socket, tls, handlers,
                        )
                        .await
                        {
                            tracing::debug!(%peer, error = %e, "postgres connection ended");
                        }
                        drop(slot);
                    });
                }
                Err(e) => tracing::warn!(error = %e, "accepting a postgres connection"),
            }
        }
    });
    Ok(ServeHandle { local_addr, task })
}

/// The TLS acceptor for `cert` (PEM chain) and `key` (PEM, PKCS#8, PKCS#1 or SEC1),
/// with the certificate's PEM for SCRAM channel binding. rustls with the *ring*
/// provider, TLS 1.2 and 1.3 only.
fn tls_acceptor(cert: &Path, key: &Path) -> Result<(TlsAcceptor, Vec<u8>), String> {
    let pem = std::fs::read(cert).map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--tls-cert {}: not a PEM certificate: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in the file",
            cert.display()
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: not a PEM private key: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_no_client_auth()
    .with_single_cert(chain, key_der)
    .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    Ok((TlsAcceptor::from(Arc::new(config)), pem))
}
