"""TokenVerifier: HS/RS/ES/JWKS keys, claims with leeway, algorithm confusion."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wshub.config import TokenConfig
from wshub.errors import ConfigError, WshubError
from wshub.tokens import TokenExpired, TokenInvalid, TokenVerifier

SECRET = "s3cr3t-hmac-key-that-is-long-enough-for-hs512-0123456789abcdefghijkl"


def pem(public_key: Any) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ec384_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def claims(**kw: Any) -> dict[str, Any]:
    now = int(time.time())
    c: dict[str, Any] = {"sub": "42", "iat": now, "exp": now + 300}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_hs256(payload: dict[str, Any], key: bytes, alg: str = "HS256") -> str:
    """An HMAC token PyJWT would refuse to produce (e.g. keyed with a PEM)."""
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


# ----------------------------------------------------------------------------- HMAC


def test_hs256_valid() -> None:
    v = TokenVerifier(TokenConfig(hmac_secret=SECRET))
    tok = jwt.encode(claims(info={"a": 1}), SECRET, algorithm="HS256")
    out = v.verify(tok)
    assert out["sub"] == "42"
    assert out["info"] == {"a": 1}
    assert v.algorithms == {"HS256", "HS384", "HS512"}


def test_hs512_valid() -> None:
    v = TokenVerifier(TokenConfig(hmac_secret=SECRET))
    with pytest.raises(TokenInvalid):
        v.verify(jwt.encode(claims(), SECRET * 2, algorithm="HS512"))
    assert v.verify(jwt.encode(claims(), SECRET, algorithm="HS512"))["sub"] == "42"


def test_hs256_wrong_secret() -> None:
    v = TokenVerifier(TokenConfig(hmac_secret=SECRET))
    tok = jwt.encode(claims(), SECRET + "x", algorithm="HS256")
    with pytest.raises(TokenInvalid):
        v.verify(tok)


def test_tampered_payload_is_invalid() -> None:
    v = TokenVerifier(TokenConfig(hmac_secret=SECRET))
    head, _body, sig = jwt.encode(claims(), SECRET, algorithm="HS256").split(".")
    forged = b64(json.dumps(claims(sub="admin")).encode())
    with pytest.raises(TokenInvalid):
        v.verify(f"{head}.{forged}.{sig}")


def test_hmac_secret_that_is_a_pem_is_a_config_error(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ConfigError) as e:
        TokenVerifier(TokenConfig(hmac_secret=pem(rsa_key.public_key())))
    assert e.value.key == "token.hmac_secret"


# ----------------------------------------------------------------------------- RSA / EC


def test_rs256_pem_text(rsa_key: rsa.RSAPrivateKey) -> None:
    v = TokenVerifier(TokenConfig(rsa_public_key=pem(rsa_key.public_key())))
    assert v.verify(jwt.encode(claims(), rsa_key, algorithm="RS256"))["sub"] == "42"
    assert v.verify(jwt.encode(claims(), rsa_key, algorithm="RS512"))["sub"] == "42"


def test_rs256_pem_file(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    f = tmp_path / "pub.pem"
    f.write_text(pem(rsa_key.public_key()))
    v = TokenVerifier(TokenConfig(rsa_public_key=str(f)))
    assert v.verify(jwt.encode(claims(), rsa_key, algorithm="RS256"))["sub"] == "42"


def test_rs256_other_key_invalid(rsa_key: rsa.RSAPrivateKey, rsa_key2: rsa.RSAPrivateKey) -> None:
    v = TokenVerifier(TokenConfig(rsa_public_key=pem(rsa_key.public_key())))
    with pytest.raises(TokenInvalid):
        v.verify(jwt.encode(claims(), rsa_key2, algorithm="RS256"))


def test_es256(ec_key: ec.EllipticCurvePrivateKey) -> None:
    v = TokenVerifier(TokenConfig(ecdsa_public_key=pem(ec_key.public_key())))
    assert v.verify(jwt.encode(claims(), ec_key, algorithm="ES256"))["sub"] == "42"
    assert v.algorithms == {"ES256", "ES384", "ES512"}


def test_es_curve_mismatch_invalid(
    ec_key: ec.EllipticCurvePrivateKey, ec384_key: ec.EllipticCurvePrivateKey
) -> None:
    v = TokenVerifier(TokenConfig(ecdsa_public_key=pem(ec_key.public_key())))
    with pytest.raises(TokenInvalid):  # ES384 (P-384) against the configured P-256 key
        v.verify(jwt.encode(claims(), ec384_key, algorithm="ES384"))


def test_key_type_mismatch_is_config_error(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError):
        TokenVerifier(TokenConfig(rsa_public_key=pem(ec_key.public_key())))
    with pytest.raises(ConfigError):
        TokenVerifier(TokenConfig(ecdsa_public_key=pem(rsa_key.public_key())))
    with pytest.raises(ConfigError):
        TokenVerifier(TokenConfig(rsa_public_key=str(tmp_path / "nope.pem")))
    with pytest.raises(ConfigError):
        TokenVerifier(TokenConfig(rsa_public_key="-----BEGIN PUBLIC KEY-----\ngarbage\n"))


def test_all_keys_together(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> None:
    v = TokenVerifier(
        TokenConfig(
            hmac_secret=SECRET,
            rsa_public_key=pem(rsa_key.public_key()),
            ecdsa_public_key=pem(ec_key.public_key()),
        )
    )
    assert v.verify(jwt.encode(claims(), SECRET, algorithm="HS256"))["sub"] == "42"
    assert v.verify(jwt.encode(claims(), rsa_key, algorithm="RS256"))["sub"] == "42"
    assert v.verify(jwt.encode(claims(), ec_key, algorithm="ES256"))["sub"] == "42"


# ----------------------------------------------------------------------------- JWKS


@pytest.fixture
def jwks_file(
    tmp_path: Path,
    rsa_key: rsa.RSAPrivateKey,
    rsa_key2: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> Path:
    def jwk(key: Any, algo: type[Any], **kw: Any) -> dict[str, Any]:
        d: dict[str, Any] = json.loads(algo.to_jwk(key.public_key()))
        d.update(kw)
        return d

    keys = [
        jwk(rsa_key, jwt.algorithms.RSAAlgorithm, kid="r1", alg="RS256", use="sig"),
        jwk(rsa_key2, jwt.algorithms.RSAAlgorithm, kid="r2"),
        jwk(ec_key, jwt.algorithms.ECAlgorithm, kid="e1"),
        {"kty": "oct", "kid": "h1", "k": b64(SECRET.encode())},
    ]
    f = tmp_path / "jwks.json"
    f.write_text(json.dumps({"keys": keys}))
    return f


def test_jwks_selects_by_kid(
    jwks_file: Path,
    rsa_key: rsa.RSAPrivateKey,
    rsa_key2: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    v = TokenVerifier(TokenConfig(jwks_file=str(jwks_file)))
    t1 = jwt.encode(claims(sub="a"), rsa_key, algorithm="RS256", headers={"kid": "r1"})
    t2 = jwt.encode(claims(sub="b"), rsa_key2, algorithm="RS384", headers={"kid": "r2"})
    t3 = jwt.encode(claims(sub="c"), ec_key, algorithm="ES256", headers={"kid": "e1"})
    assert [v.verify(t)["sub"] for t in (t1, t2, t3)] == ["a", "b", "c"]


def test_jwks_wrong_kid_or_alg_invalid(
    jwks_file: Path, rsa_key: rsa.RSAPrivateKey, rsa_key2: rsa.RSAPrivateKey
) -> None:
    v = TokenVerifier(TokenConfig(jwks_file=str(jwks_file)))
    # key r2 signed, but claims to be r1
    with pytest.raises(TokenInvalid):
        v.verify(jwt.encode(claims(), rsa_key2, algorithm="RS256", headers={"kid": "r1"}))
    # unknown kid
    with pytest.raises(TokenInvalid):
        v.verify(jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "zz"}))
    # no kid with several keys
    with pytest.raises(TokenInvalid):
        v.verify(jwt.encode(claims(), rsa_key, algorithm="RS256"))
    # r1 is pinned to RS256 by its "alg"
    with pytest.raises(TokenInvalid):
        v.verify(jwt.encode(claims(), rsa_key, algorithm="RS384", headers={"kid": "r1"}))
    # EC algorithm against an RSA kid
    with pytest.raises(TokenInvalid):
        v.verify(jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "e1"}))


def test_jwks_oct_keys_ignored(jwks_file: Path) -> None:
    v = TokenVerifier(TokenConfig(jwks_file=str(jwks_file)))
    assert not v.algorithms & {"HS256", "HS384", "HS512"}
    tok = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": "h1"})
    with pytest.raises(TokenInvalid):
        v.verify(tok)


def test_jwks_single_key_needs_no_kid(tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey) -> None:
    f = tmp_path / "one.json"
    f.write_text(
        json.dumps({"keys": [json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))]})
    )
    v = TokenVerifier(TokenConfig(jwks_file=str(f)))
    assert v.verify(jwt.encode(claims(), ec_key, algorithm="ES256"))["sub"] == "42"


def test_jwks_bad_files(tmp_path: Path) -> None:
    for content in ("not json", '{"nokeys": 1}', '{"keys": [{"kty": "oct", "k": "AAAA"}]}'):
        f = tmp_path / "bad.json"
        f.write_text(content)
        with pytest.raises(ConfigError) as e:
            TokenVerifier(TokenConfig(jwks_file=str(f)))
        assert e.value.key == "token.jwks_file"
    with pytest.raises(ConfigError):
        TokenVerifier(TokenConfig(jwks_file=str(tmp_path / "missing.json")))


# ----------------------------------------------------------------------------- claims


@pytest.fixture
def hs() -> TokenVerifier:
    return TokenVerifier(TokenConfig(hmac_secret=SECRET, leeway=5))


def sign(**kw: Any) -> str:
    return jwt.encode(claims(**kw), SECRET, algorithm="HS256")


def test_exp_within_leeway_ok(hs: TokenVerifier) -> None:
    assert hs.verify(sign(exp=int(time.time()) - 2))["sub"] == "42"


def test_exp_past_leeway_expired(hs: TokenVerifier) -> None:
    with pytest.raises(TokenExpired):
        hs.verify(sign(exp=int(time.time()) - 60))


def test_no_exp_is_accepted(hs: TokenVerifier) -> None:
    assert hs.verify(sign(exp=None))["sub"] == "42"


def test_bad_exp_type_invalid(hs: TokenVerifier) -> None:
    with pytest.raises(TokenInvalid):
        hs.verify(sign(exp="tomorrow"))


def test_nbf(hs: TokenVerifier) -> None:
    assert hs.verify(sign(nbf=int(time.time()) + 2))["sub"] == "42"
    with pytest.raises(TokenInvalid):
        hs.verify(sign(nbf=int(time.time()) + 60))


def test_future_iat_invalid(hs: TokenVerifier) -> None:
    with pytest.raises(TokenInvalid):
        hs.verify(sign(iat=int(time.time()) + 600))


def test_forged_expired_token_is_invalid_not_expired(hs: TokenVerifier) -> None:
    tok = jwt.encode(claims(exp=int(time.time()) - 600), "another-secret-0123456789abcdef0123")
    with pytest.raises(TokenInvalid):
        hs.verify(tok)


def test_issuer() -> None:
    v = TokenVerifier(TokenConfig(hmac_secret=SECRET, issuer="https://issuer.test"))
    assert v.verify(sign(iss="https://issuer.test"))["sub"] == "42"
    with pytest.raises(TokenInvalid):
        v.verify(sign(iss="https://evil.test"))
    with pytest.raises(TokenInvalid):
        v.verify(sign())


def test_audience() -> None:
    v = TokenVerifier(TokenConfig(hmac_secret=SECRET, audience="wshub"))
    assert v.verify(sign(aud="wshub"))["sub"] == "42"
    assert v.verify(sign(aud=["other", "wshub"]))["sub"] == "42"
    with pytest.raises(TokenInvalid):
        v.verify(sign(aud="other"))
    with pytest.raises(TokenInvalid):
        v.verify(sign())


def test_audience_not_configured_ignores_aud(hs: TokenVerifier) -> None:
    assert hs.verify(sign(aud="anything"))["sub"] == "42"


def test_non_string_sub_invalid(hs: TokenVerifier) -> None:
    with pytest.raises(TokenInvalid):
        hs.verify(sign(sub=42))


# ----------------------------------------------------------------------------- confusion


def test_alg_none_refused(hs: TokenVerifier) -> None:
    tok = jwt.encode(claims(), None, algorithm="none")
    with pytest.raises(TokenInvalid):
        hs.verify(tok)
    head = b64(b'{"alg":"none","typ":"JWT"}')
    with pytest.raises(TokenInvalid):
        hs.verify(f"{head}.{b64(json.dumps(claims()).encode())}.")


def test_hs256_signed_with_public_key_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """The classic confusion attack: HS256 keyed with the (public) RSA PEM."""
    public_pem = pem(rsa_key.public_key())
    tok = hand_hs256(claims(sub="admin"), public_pem.encode())
    with pytest.raises(TokenInvalid):
        TokenVerifier(TokenConfig(rsa_public_key=public_pem)).verify(tok)
    # even when an HMAC secret is configured too, HS* only ever uses that secret
    both = TokenVerifier(TokenConfig(rsa_public_key=public_pem, hmac_secret=SECRET))
    with pytest.raises(TokenInvalid):
        both.verify(tok)


def test_asymmetric_alg_without_that_key_refused(
    hs: TokenVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(TokenInvalid):
        hs.verify(jwt.encode(claims(), rsa_key, algorithm="RS256"))


def test_no_keys_configured() -> None:
    v = TokenVerifier(TokenConfig())
    assert not v.configured
    with pytest.raises(TokenInvalid):
        v.verify(sign())


@pytest.mark.parametrize(
    "token", ["", "abc", "a.b.c", "eyJ.eyJ.", "eyJhbGciOiJIUzI1NiJ9.x.y", "x" * 20000]
)
def test_malformed_invalid(hs: TokenVerifier, token: str) -> None:
    with pytest.raises(TokenInvalid):
        hs.verify(token)


def test_errors_are_wshub_errors_and_never_echo_the_token(hs: TokenVerifier) -> None:
    for tok in (sign(exp=int(time.time()) - 600), sign(nbf=int(time.time()) + 600), "abc.def.ghi"):
        with pytest.raises(WshubError) as e:
            hs.verify(tok)
        assert tok not in str(e.value)
        assert e.value.__cause__ is None


def test_verified_cache_rechecks_expiry_and_returns_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "cache-test-secret-long-enough-for-hs256!"
    v = TokenVerifier(TokenConfig(hmac_secret=secret, leeway=0))
    now = time.time()
    tok = jwt.encode({"sub": "u", "exp": int(now) + 60}, secret, algorithm="HS256")
    first = v.verify(tok)
    first["sub"] = "changed by caller"
    assert v.verify(tok)["sub"] == "u"  # the cache hands out copies
    # The cached signature check does not skip the time checks.
    monkeypatch.setattr(time, "time", lambda: now + 120)
    with pytest.raises(TokenExpired):
        v.verify(tok)
    # A tampered token is never served from the cache.
    with pytest.raises(TokenInvalid):
        v.verify(tok[:-2] + ("AA" if tok[-2:] != "AA" else "BB"))
