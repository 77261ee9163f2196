//! The read-only Postgres-wire server (`lineage sql --serve`): DataFusion behind
//! `datafusion-postgres`, a [`ReadOnlyHook`] in front of every statement, and MD5
//! password authentication when a password is configured.

use std::fmt::Debug;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

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
use datafusion_postgres::pgwire::api::auth::md5pass::{
    hash_md5_password, Md5PasswordAuthStartupHandler,
};
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::api::{ClientInfo, PgWireServerHandlers};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::Sink;
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

/// The one password of the server, checked with Postgres MD5 authentication.
#[derive(Debug)]
struct PasswordSource {
    user: Option<String>,
    password: String,
}

#[async_trait]
impl AuthSource for PasswordSource {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        if self.user.as_deref().is_some_and(|u| u != user) {
            return Err(PgWireError::InvalidPassword(user.to_owned()));
        }
        let salt = random_salt();
        let hashed = hash_md5_password(user, &self.password, &salt);
        Ok(Password::new(Some(salt.to_vec()), hashed.into_bytes()))
    }
}

fn random_salt() -> [u8; 4] {
    // A per-process random key (std's hasher seed) mixed with the clock: a salt
    // only has to differ between connections.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let v = h.finish().to_le_bytes();
    [v[0], v[1], v[2], v[3]]
}

struct OpenStartup;

impl NoopStartupHandler for OpenStartup {}

/// No authentication, or MD5 password authentication (a fresh handler per
/// connection: the MD5 handler keeps the connection's salted hash).
enum Startup {
    Open(OpenStartup),
    Password(Md5PasswordAuthStartupHandler<PasswordSource, DefaultServerParameterProvider>),
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
        match self {
            Startup::Open(h) => h.on_startup(client, message).await,
            Startup::Password(h) => h.on_startup(client, message).await,
        }
    }
}

struct Handlers {
    session: Arc<DfSessionService>,
    auth: Option<Arc<PasswordSource>>,
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
        Arc::new(match &self.auth {
            None => Startup::Open(OpenStartup),
            Some(source) => Startup::Password(Md5PasswordAuthStartupHandler::new(
                source.clone(),
                Arc::new(DefaultServerParameterProvider::default()),
            )),
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
    let handlers = Arc::new(Handlers {
        session: Arc::new(DfSessionService::new_with_hooks(ctx, hooks)),
        auth: config.password.as_ref().map(|p| {
            Arc::new(PasswordSource {
                user: config.user.clone(),
                password: p.clone(),
            })
        }),
    });
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|e| serve_err(e.to_string()))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| serve_err(e.to_string()))?;
    if !local_addr.ip().is_loopback() && config.password.is_none() {
        return Err(serve_err(format!(
            "refusing to serve the lineage tables on {local_addr}, reachable from other \
             hosts, without a password: set one (--password-env VAR), or listen on 127.0.0.1"
        )));
    }
    tracing::info!(%local_addr, password = config.password.is_some(), "postgres-wire server listening (read-only)");
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
                    tokio::spawn(async move {
                        if let Err(e) = datafusion_postgres::pgwire::tokio::process_socket(
                            socket, None, handlers,
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
