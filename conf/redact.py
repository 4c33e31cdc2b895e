"""The one redaction function: everything that leaves a lakebert process goes through `redact`.

    from conf.redact import redact
    redact({"spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net": "abc=="})  # -> {...: "***"}
    redact("MLflow at http://user:pw@host:5000 is not usable")                # -> "...http://user:***@host..."

Console output, log files, saved configs (`_runs/*/config.json`), MLflow params and tags,
error messages and the Airflow task's rendered command all use it. It hides:

- values under a secret-named key: a key is split into words at `.`, `_`, `-` and camelCase
  boundaries, and any word that names a secret (`SECRET_WORDS`), ends with one
  (`SECRET_SUFFIXES`: `sslpassword`) or does so with the next word (`passPhrase`) marks it,
  anywhere in the key: `fs.azure.account.key.<account>.dfs.core.windows.net`,
  `fs.s3a.encryption.key`, `spark.executorEnv.GITHUB_PAT`, `ingest.options.password`;
  `auth` and `Authorization` as the key's last word (`ingest.options.Authorization`; not
  `fs.azure.account.auth.type`, which names a kind of credential);
- URL userinfo of any form: `https://tok@host/` and `scheme://user:pw@host` (the user name
  is kept when a password follows it). `abfs(s)://` and `wasb(s)://` are exempt without a
  password: their userinfo is the storage container, not a credential;
- query-string and JDBC parameters with secret names (`?password=`, `;password=`, `&sig=`),
  and an HTTP credential in any text (`Authorization: Basic ***`, `Bearer ***`);
- any value that `remember_secrets` saw under a secret key or in a URL's userinfo (the loader
  calls it on every config), wherever it appears later: a Java exception that echoes a
  setting still prints `***`.

Secret words match whole words, so `tokenizer`, `max_tokens` and `partitions` are shown.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
SECRET_WORDS = frozenset({"key", "secret", "token", "password", "passwd", "pwd", "credential", "credentials",
                          "sas", "sig", "signature", "private", "pat", "passphrase", "apikey", "accesskey",
                          "secretkey", "privatekey", "keyfile", "sastoken", "accesstoken", "authtoken",
                          "clientsecret"})
# A word that ends with one of these names a secret too: sslpassword, dbpassword, csrftoken.
SECRET_SUFFIXES = ("password", "passwd", "passphrase", "secret", "token")
# Secrets only as a key's last word: `options.auth`, an `Authorization` header; but
# `fs.azure.account.auth.type=OAuth` names a kind of credential, and masking it would hide
# every "OAuth" in the logs.
LAST_WORD_SECRETS = frozenset({"auth", "authorization"})
# Keys whose values are ids or names, not credentials, although a word says otherwise.
NOT_SECRET_KEYS = frozenset({"job_key", "lakebert.job_key"})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
# scheme://userinfo@ ; userinfo stops at /, ?, #, @ or whitespace.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/?#@\s'\"]+)@")
# name=value after ?, & or ; (URL queries and JDBC property lists).
_PARAM = re.compile(r"([?&;]\s*)([A-Za-z0-9_.\-]+)=([^&;#\s'\"]*)")
# An HTTP credential: an Authorization header's (after its scheme), or a bearer token anywhere.
_CREDENTIAL = re.compile(r"(?i)(\b(?:proxy-)?authorization\s*:\s*(?:[A-Za-z]+\s+)?|\bbearer\s+)"
                         r"([A-Za-z0-9\-._~+/]{8,}=*)")
_CONTAINER_SCHEMES = ("abfs://", "abfss://", "wasb://", "wasbs://")
_MIN_REMEMBERED = 4  # shorter values (`1`, `abc`) would blank out unrelated text
_remembered: set[str] = set()


def key_words(key: str) -> list[str]:
    """`spark.executorEnv.GITHUB_PAT` -> ['spark', 'executor', 'env', 'github', 'pat']."""
    return [w.lower() for part in re.split(r"[^A-Za-z0-9]+", key) for w in _WORD.findall(part)]


def is_secret_key(key: str) -> bool:
    if key in NOT_SECRET_KEYS or key.rsplit(".", 1)[-1] in NOT_SECRET_KEYS:
        return False
    joined = re.sub(r"[^a-z0-9]", "", key.lower())
    words = key_words(key)
    pairs = [a + b for a, b in zip(words, words[1:])]  # passPhrase, pass_word
    return (any(w in SECRET_WORDS or w.endswith(SECRET_SUFFIXES) for w in (*words, *pairs))
            or bool(words and words[-1] in LAST_WORD_SECRETS) or joined in SECRET_WORDS)


def redact(value: Any, key: str = "", *, by_key: bool = True) -> Any:
    """`value` with every secret replaced by `***`: dicts by key (dotted with `key`), lists by
    item, strings by their text. `by_key=False` looks at text only (for summaries, whose keys
    such as `job_key` are no secrets)."""
    if isinstance(value, dict):
        return {k: redact(v, f"{key}.{k}" if key else str(k), by_key=by_key) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, key, by_key=by_key) for v in value)
    if not isinstance(value, str):
        return value
    if by_key and key and value and is_secret_key(key):
        return REDACTED
    return _redact_text(value)


def _redact_text(text: str) -> str:
    def userinfo(m: re.Match) -> str:
        scheme, info = m.group(1), m.group(2)
        user, sep, _ = info.partition(":")
        if sep:
            return f"{scheme}{user}:{REDACTED}@"
        if scheme.lower() in _CONTAINER_SCHEMES:
            return m.group(0)
        return f"{scheme}{REDACTED}@"

    def param(m: re.Match) -> str:
        if m.group(3) and is_secret_key(m.group(2)):
            return f"{m.group(1)}{m.group(2)}={REDACTED}"
        return m.group(0)

    text = _CREDENTIAL.sub(lambda m: f"{m.group(1)}{REDACTED}", _PARAM.sub(param, _URL_USERINFO.sub(userinfo, text)))
    for secret in sorted(_remembered, key=len, reverse=True):  # longest first: one may contain another
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def secrets_in(value: Any, key: str = "") -> set[str]:
    """The secret strings in `value`: values under secret keys, URL passwords and tokens,
    secret query parameters."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            found |= secrets_in(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, (list, tuple)):
        for v in value:
            found |= secrets_in(v, key)
    elif isinstance(value, str) and value:
        if key and is_secret_key(key):
            found.add(value)
        for m in _URL_USERINFO.finditer(value):
            user, sep, password = m.group(2).partition(":")
            if sep:
                found.add(password)
            elif m.group(1).lower() not in _CONTAINER_SCHEMES:
                found.add(user)
        for m in _PARAM.finditer(value):
            if m.group(3) and is_secret_key(m.group(2)):
                found.add(m.group(3))
        found.update(m.group(2) for m in _CREDENTIAL.finditer(value))
    return {s for s in found if len(s) >= _MIN_REMEMBERED and s != REDACTED}


def remember_secrets(value: Any) -> None:
    """Hide the secrets in `value` (a config as plain data) wherever they appear from now on."""
    _remembered.update(secrets_in(value))
