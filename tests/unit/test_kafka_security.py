"""Kafka TLS/SASL settings, the client options built from them, and the
refusal to serve HTTP to the network without a token."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from regen.settings import Settings
from regen.streams import local_broker
from regen.streams.connection import connection_failure, faust_credentials, kafka_security
from regen.streams.exceptions import BrokerError, ConfigError

SASL = {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "regen",
        "KAFKA_SASL_PASSWORD": "pa55-word"}


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate and its key, as a CA file and a client certificate."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "client.pem", folder / "client.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=regen",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_plaintext_is_the_default_and_adds_nothing():
    settings = Settings.from_env({})
    assert kafka_security(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_options_and_faust_agree(mechanism):
    settings = Settings.from_env({**SASL, "KAFKA_SASL_MECHANISM": mechanism})
    options = kafka_security(settings)
    assert options == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
                       "sasl_plain_username": "regen", "sasl_plain_password": "pa55-word"}
    # What Faust's driver hands aiokafka for its consumer and producer.
    faust_options = credentials_to_aiokafka_auth(faust_credentials(settings))
    assert faust_options == {**options, "ssl_context": None}


def test_sasl_ssl_verifies_the_broker_and_faust_uses_sasl_over_tls(client_cert):
    cert, _ = client_cert
    settings = Settings.from_env({**SASL, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SSL_CAFILE": str(cert)})
    options = kafka_security(settings)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_plain_username"] == "regen"
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "regen"),),)]
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    faust_options = credentials_to_aiokafka_auth(credentials)
    assert faust_options["security_protocol"] == "SASL_SSL"
    assert isinstance(faust_options["ssl_context"], ssl.SSLContext)


def test_mutual_tls_loads_the_client_certificate(client_cert):
    cert, key = client_cert
    settings = Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(cert),
                                  "KAFKA_SSL_CERTFILE": str(cert), "KAFKA_SSL_KEYFILE": str(key)})
    assert kafka_security(settings)["security_protocol"] == "SSL"
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


def test_a_tls_file_that_cannot_be_read_is_a_config_error(tmp_path):
    settings = Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(tmp_path / "nope.pem")})
    with pytest.raises(ConfigError, match="KAFKA_SSL_CAFILE=.*nope.pem"):
        kafka_security(settings)


@pytest.mark.parametrize("env, message", [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, r"KAFKA_SECURITY_PROTOCOL='TLS' is not valid; valid: PLAINTEXT, SSL, "
                                         r"SASL_PLAINTEXT, SASL_SSL"),
    ({**SASL, "KAFKA_SASL_MECHANISM": "GSSAPI"}, r"KAFKA_SASL_MECHANISM='GSSAPI' is not valid; valid: PLAIN, "
                                                 r"SCRAM-SHA-256, SCRAM-SHA-512"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "SASL_SSL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    ({**SASL, "KAFKA_SASL_PASSWORD": ""}, "SASL_PLAINTEXT needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SASL_USERNAME": "regen", "KAFKA_SASL_PASSWORD": "x"}, "PLAINTEXT does not use SASL"),
    ({"KAFKA_SSL_CAFILE": "/ca.pem"}, "KAFKA_SSL_CAFILE set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS"),
    ({**SASL, "KAFKA_SSL_CAFILE": "/ca.pem"}, "SASL_PLAINTEXT does not use TLS; use SSL or SASL_SSL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEYFILE": "/k.pem"}, "KAFKA_SSL_KEYFILE is set without "
                                                                         "KAFKA_SSL_CERTFILE"),
])
def test_combinations_that_would_be_ignored_or_cannot_work_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_the_sasl_password_never_shows():
    settings = Settings.from_env(SASL)
    assert "pa55-word" not in repr(settings) and "pa55-word" not in str(settings.describe())
    assert ("kafka_sasl_password", "KAFKA_SASL_PASSWORD", "********") in settings.describe()
    result = subprocess.run([sys.executable, "-m", "regen.cli.main", "config"], capture_output=True, text=True,
                            env={**os.environ, **SASL}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "KAFKA_SASL_PASSWORD" in result.stdout and "********" in result.stdout
    assert "pa55-word" not in result.stdout + result.stderr
    assert "SASL_PLAINTEXT" in result.stdout


def test_a_failed_connection_says_which_settings_to_check():
    message = connection_failure(Settings.from_env(SASL), "k1:9093", "Authentication failed")
    assert "k1:9093" in message and "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT" in message
    assert "Authentication failed" in message and "KAFKA_SASL_USERNAME ('regen')" in message
    assert "KAFKA_SASL_PASSWORD" in message and "pa55-word" not in message


# --- the HTTP API on the network ------------------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.1.2.3", "regen.example.com"])
def test_serving_the_network_without_a_token_is_refused(host):
    with pytest.raises(ConfigError, match="REGEN_WEB_TOKEN.*REGEN_WEB_ALLOW_ANONYMOUS=1"):
        Settings(web_host=host).check_web_exposure()


@pytest.mark.parametrize("settings", [
    Settings(web_host="127.0.0.1"), Settings(web_host="localhost"), Settings(web_host="::1"),
    Settings(web_host="127.0.0.2"), Settings(web_host="0.0.0.0", web_token="t0ken"),
    Settings(web_host="0.0.0.0", web_allow_anonymous=True),
])
def test_loopback_a_token_or_an_explicit_override_may_serve(settings):
    settings.check_web_exposure()


def test_the_allow_anonymous_override_reads_from_the_environment():
    settings = Settings.from_env({"REGEN_WEB_HOST": "0.0.0.0", "REGEN_WEB_ALLOW_ANONYMOUS": "1"})
    assert settings.web_allow_anonymous
    settings.check_web_exposure()


def test_a_worker_on_the_network_without_a_token_exits_1_before_connecting(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REGEN_"))}
    env.update(REGEN_WEB_HOST="0.0.0.0", REGEN_STATE_DIR=str(tmp_path / "state"))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "regen.cli.main", "worker"], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 1
    assert "REGEN_WEB_HOST='0.0.0.0'" in result.stderr and "REGEN_WEB_TOKEN" in result.stderr
    assert "REGEN_WEB_ALLOW_ANONYMOUS=1" in result.stderr
    # It stopped at the check: with no broker configured it would otherwise complain about that.
    assert "no Kafka broker" not in result.stderr and time.monotonic() - started < 30


# --- the local broker's SASL listener --------------------------------------------------

def test_the_local_broker_is_plaintext_unless_sasl_users_are_given(tmp_path):
    plain = local_broker._server_properties(tmp_path, 9092, 9093) + local_broker._sasl_properties({})
    assert "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in plain
    assert "SASL://" not in plain and "jaas" not in plain
    sasl = local_broker._server_properties(tmp_path, 9092, 9093, 9094) + local_broker._sasl_properties({"regen": "pw"})
    lines = sasl.splitlines()
    assert "listeners=PLAINTEXT://127.0.0.1:9092,SASL://127.0.0.1:9094,CONTROLLER://127.0.0.1:9093" in lines
    assert "inter.broker.listener.name=PLAINTEXT" in lines and "sasl.enabled.mechanisms=PLAIN" in lines
    assert ('listener.name.sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule '
            'required user_regen="pw";') in lines


@pytest.mark.parametrize("users", [{"regen": 'pw"; x'}, {"a b": "pw"}])
def test_sasl_accounts_that_would_break_the_jaas_line_are_refused(users):
    with pytest.raises(BrokerError, match="SASL user"):
        local_broker._sasl_properties(users)
