"""JWT verification shared by the pre-upgrade JWT middleware and the hub (connection and
subscription tokens).

A :class:`TokenVerifier` is built once from :class:`~wshub.config.TokenConfig`. Which
algorithms it accepts follows from the keys configured, never from the token:

* ``hmac_secret``      -> HS256 / HS384 / HS512, verified with that secret only;
* ``rsa_public_key``   -> RS256 / RS384 / RS512 with that key (PEM text or a PEM file path;
  a PEM certificate works too);
* ``ecdsa_public_key`` -> ES256 / ES384 / ES512 with that key (PyJWT checks the curve);
* ``jwks_file``        -> RSA and EC keys of a JWK Set file, chosen by the token's ``kid``
  (a JWK that names an ``alg`` only verifies that algorithm). Symmetric (``oct``) JWKs
  are ignored: shared secrets belong in ``hmac_secret``.

``none`` is never accepted, and an HS* token is never checked against a public key (the
classic algorithm-confusion attack): the key is picked by algorithm family and PyJWT is
told the one algorithm that family allows.

Claims: ``exp`` and ``nbf`` (and a future ``iat``) are checked when present, with
``leeway`` seconds of slack; ``iss`` and ``aud`` are required and checked only when
configured. The signature is checked before any claim, so a forged token is always
:class:`TokenInvalid`, never :class:`TokenExpired`.

``verify()`` returns the claims. Errors: :class:`TokenExpired` (the hub answers 109 /
asks for a refresh) and :class:`TokenInvalid` (the hub disconnects with 3500). Their
messages never contain the token.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.types import Options

from wshub.config import TokenConfig
from wshub.errors import ConfigError, WshubError
from wshub.logs import register_secret

__all__ = ["TokenError", "TokenExpired", "TokenInvalid", "TokenVerifier"]

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512"})
EC_ALGORITHMS = frozenset({"ES256", "ES384", "ES512"})

MAX_TOKEN_LENGTH = 16384
VERIFIED_CACHE_SIZE = 10_000
"""Verified tokens remembered (see TokenVerifier.verify)."""
"""Longer tokens are refused before any parsing."""


class TokenError(WshubError):
    """Base of the two verification failures."""


class TokenExpired(TokenError):
    """The signature is good but ``exp`` (plus leeway) has passed."""


class TokenInvalid(TokenError):
    """Anything else: malformed, bad signature, wrong algorithm/key, nbf, iss, aud."""


@dataclass(frozen=True, slots=True)
class _Jwk:
    key: Any
    family: frozenset[str]
    alg: str | None


class TokenVerifier:
    """Verify JWTs against the keys of a :class:`TokenConfig` (see the module docstring)."""

    def __init__(self, config: TokenConfig) -> None:
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._hmac: bytes | None = None
        self._rsa: RSAPublicKey | None = None
        self._ec: EllipticCurvePublicKey | None = None
        self._jwks: dict[str, _Jwk] = {}
        self._jwks_anonymous: list[_Jwk] = []
        self._issuer = config.issuer or None
        self._audience = config.audience or None
        self._leeway = float(config.leeway)

        if config.hmac_secret:
            if "-----BEGIN" in config.hmac_secret or config.hmac_secret.startswith("ssh-"):
                raise ConfigError("token.hmac_secret", "looks like a PEM/SSH key, not a secret")
            self._hmac = config.hmac_secret.encode()
            register_secret(config.hmac_secret)
        if config.rsa_public_key:
            key = _load_public_key("token.rsa_public_key", config.rsa_public_key)
            if not isinstance(key, RSAPublicKey):
                raise ConfigError("token.rsa_public_key", "not an RSA public key")
            self._rsa = key
        if config.ecdsa_public_key:
            key = _load_public_key("token.ecdsa_public_key", config.ecdsa_public_key)
            if not isinstance(key, EllipticCurvePublicKey):
                raise ConfigError("token.ecdsa_public_key", "not an EC public key")
            self._ec = key
        if config.jwks_file:
            self._load_jwks(config.jwks_file)

        algs: set[str] = set()
        if self._hmac is not None:
            algs |= HMAC_ALGORITHMS
        if self._rsa is not None:
            algs |= RSA_ALGORITHMS
        if self._ec is not None:
            algs |= EC_ALGORITHMS
        for jwk_ in [*self._jwks.values(), *self._jwks_anonymous]:
            algs |= {jwk_.alg} if jwk_.alg else jwk_.family
        self.algorithms: frozenset[str] = frozenset(algs)
        """The algorithms a token may use with this configuration."""

    @property
    def configured(self) -> bool:
        """Whether any key is configured (otherwise every token is invalid)."""
        return bool(self.algorithms)

    def _load_jwks(self, path: str) -> None:
        key = "token.jwks_file"
        try:
            data = orjson.loads(Path(path).read_bytes())
        except OSError as e:
            raise ConfigError(key, f"cannot read {path}: {e.strerror}") from None
        except orjson.JSONDecodeError:
            raise ConfigError(key, f"{path} is not JSON") from None
        keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(keys, list):
            raise ConfigError(key, f"{path} is not a JWK Set (no 'keys' list)")
        for entry in keys:
            if not isinstance(entry, dict):
                continue
            kty = entry.get("kty")
            if kty == "RSA":
                family = RSA_ALGORITHMS
            elif kty == "EC":
                family = EC_ALGORITHMS
            else:
                continue  # oct (symmetric), OKP, unknown: not accepted from a JWKS
            alg = entry.get("alg")
            if alg is not None and alg not in family:
                continue  # e.g. PS256 or a mislabelled key: unusable here
            try:
                parsed = jwt.PyJWK(entry, algorithm=alg)
            except jwt.PyJWTError as e:
                raise ConfigError(key, f"unusable key in {path}: {e}") from None
            item = _Jwk(parsed.key, family, alg)
            kid = entry.get("kid")
            if isinstance(kid, str) and kid:
                self._jwks[kid] = item
            else:
                self._jwks_anonymous.append(item)
        if not self._jwks and not self._jwks_anonymous:
            raise ConfigError(key, f"{path} holds no usable RSA or EC key")

    def _key_for(self, alg: str, kid: str | None) -> Any:
        if alg not in self.algorithms:
            raise TokenInvalid(f"algorithm {alg[:16]!r} not accepted")
        if alg in HMAC_ALGORITHMS:
            return self._hmac
        # Asymmetric: a kid naming a JWKS key picks that key.
        if kid is not None and kid in self._jwks:
            jwk_ = self._jwks[kid]
            if alg not in jwk_.family or (jwk_.alg is not None and jwk_.alg != alg):
                raise TokenInvalid("algorithm does not match the key")
            return jwk_.key
        static = self._rsa if alg in RSA_ALGORITHMS else self._ec
        if static is not None:
            return static
        every = [*self._jwks.values(), *self._jwks_anonymous]
        if kid is None and len(every) == 1:
            # A one-key set needs no kid.
            only = every[0]
            if alg in only.family and (only.alg is None or only.alg == alg):
                return only.key
            raise TokenInvalid("algorithm does not match the key")
        raise TokenInvalid("unknown key id" if kid is not None else "no key for token")

    def verify(self, token: str) -> dict[str, Any]:
        """Verify ``token`` and return its claims (a fresh dict the caller may keep).

        Raises :class:`TokenExpired` or :class:`TokenInvalid`.

        Tokens whose signature has been verified are remembered (a bounded LRU keyed by the
        whole token string), so a client that reconnects with the same token, as every SDK
        does, costs a dict look-up and the time checks instead of a signature check. The
        time claims (exp, nbf) are checked again on every use.
        """
        cached = self._verified.get(token)
        if cached is not None:
            self._verified.move_to_end(token)
            self._check_times(cached)
            return dict(cached)
        claims = self._verify_uncached(token)
        self._verified[token] = claims
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return dict(claims)

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = time.time()
        exp = claims.get("exp")
        if exp is not None and now > float(exp) + self._leeway:
            raise TokenExpired("token expired")
        nbf = claims.get("nbf")
        if nbf is not None and now < float(nbf) - self._leeway:
            raise TokenInvalid("token not yet valid")

    def _verify_uncached(self, token: str) -> dict[str, Any]:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenInvalid("malformed token") from None
        alg = header.get("alg")
        kid = header.get("kid")
        if not isinstance(alg, str):
            raise TokenInvalid("malformed token")
        if kid is not None and not isinstance(kid, str):
            raise TokenInvalid("malformed token")
        key = self._key_for(alg, kid)
        options: Options = {"verify_aud": self._audience is not None}
        if self._issuer is not None:
            options["require"] = ["iss"]
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                options=options,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenInvalid("token not yet valid") from None
        except jwt.InvalidSignatureError:
            raise TokenInvalid("invalid signature") from None
        except jwt.InvalidAudienceError:
            raise TokenInvalid("invalid audience") from None
        except jwt.InvalidIssuerError:
            raise TokenInvalid("invalid issuer") from None
        except jwt.MissingRequiredClaimError as e:
            raise TokenInvalid(f"missing claim {e.claim!r}") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise TokenInvalid("invalid token") from None
        if not isinstance(claims, dict):
            raise TokenInvalid("invalid token")
        return claims


def _load_public_key(key: str, value: str) -> Any:
    """A public key from PEM text or a PEM file path (a public key or a certificate)."""
    text = value.strip()
    if "-----BEGIN" in text:
        data = text.encode()
    else:
        try:
            data = Path(text).read_bytes()
        except OSError as e:
            raise ConfigError(key, f"not PEM text and cannot read file: {e.strerror}") from None
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data).public_key()
        return serialization.load_pem_public_key(data)
    except ValueError:
        raise ConfigError(key, "not a PEM public key or certificate") from None
