//! Logging in: the password is an API key (any user name), checked by the gate like an HTTP
//! request's key. The user `anonymous` logs in without a password when the installation lets
//! requests without a key in (`[access] anonymous`). Once in, the connection is registered for
//! cancel requests (the key data psql and drivers send to cancel a running statement).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, ConnectionGuard, ConnectionHandle, ConnectionManager, METADATA_USER,
    PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::errors::login_error;
use crate::protocols::gate::Gate;

/// The user name that logs in without a key, where the configuration allows it.
const ANONYMOUS: &str = "anonymous";

pub struct Startup {
    gate: Gate,
    connections: Arc<ConnectionManager>,
    parameters: DefaultServerParameterProvider,
    keys: RandomPidSecretKeyGenerator,
    /// TLS is configured: a connection in clear text is refused before any key is sent.
    require_tls: bool,
}

impl Startup {
    pub fn new(gate: Gate, connections: Arc<ConnectionManager>, require_tls: bool) -> Self {
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = super::SERVER_VERSION.into();
        parameters.search_path = super::SEARCH_PATH.into();
        parameters.is_superuser = false;
        parameters.default_transaction_read_only = true;
        Self {
            gate,
            connections,
            parameters,
            keys: RandomPidSecretKeyGenerator::default(),
            require_tls,
        }
    }

    async fn log_in<C>(&self, client: &mut C, key: Option<String>) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let address = client.socket_addr().ip();
        let session = self
            .gate
            .login(key, address)
            .await
            .map_err(|e| login_error(&e))?;
        client.session_extensions().insert(session);
        let (pid, secret) = self.keys.generate(&*client);
        client.set_pid_and_secret_key(pid, secret.clone());
        let (handle, guard) = self.connections.register(pid, secret);
        client
            .session_extensions()
            .insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert::<ConnectionGuard>(guard);
        finish_authentication(client, &self.parameters).await
    }
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
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.require_tls && !client.is_secure() {
                    return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "FATAL".into(),
                        "28000".into(),
                        "this server takes connections over TLS only (`tls` in [protocols.pgwire]): \
                         connect with sslmode=require or stricter"
                            .into(),
                    ))));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                if client.metadata().get(METADATA_USER).map(String::as_str) == Some(ANONYMOUS) {
                    return self.log_in(client, None).await;
                }
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?;
                self.log_in(client, Some(password.password)).await?;
            }
            _ => {}
        }
        Ok(())
    }
}
