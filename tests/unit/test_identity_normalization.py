"""Client-certificate identities match whatever form the proxy or operator used."""

from __future__ import annotations

import pytest

from graderqueue.identity.certificates import cert_key, normalize_dn, normalize_serial


@pytest.mark.parametrize(
    "given", ["2EEBA1F7", "2eeba1f7", "002EEBA1F7", "2E:EB:A1:F7", "0x2eeba1f7", " 2eeba1f7 "]
)
def test_serial_forms_are_one(given):
    assert normalize_serial(given) == "2eeba1f7"


@pytest.mark.parametrize("bad", ["", "xyz", "12 g4", "0x"])
def test_bad_serials_are_refused(bad):
    with pytest.raises(ValueError):
        normalize_serial(bad)


def test_rfc2253_and_slash_forms_are_one():
    rfc = "CN=graderqueue CA,O=France-ioi,C=FR"
    slash = "/C=FR/O=France-ioi/CN=graderqueue CA"
    assert normalize_dn(rfc) == normalize_dn(slash) == "/c=FR/o=France-ioi/cn=graderqueue CA"
    assert cert_key("0A", rfc) == cert_key("a", slash)


def test_escapes_and_utf8_as_nginx_prints_them():
    printed = r"CN=\C3\9Cn\C3\AF\, CA\+x/y \"q\" 'it',O=graderqueue"
    typed = "/O=graderqueue/CN=Ünï, CA+x/y \"q\" 'it'"
    assert normalize_dn(printed) == normalize_dn(typed)


def test_different_issuers_differ():
    assert cert_key("1", "CN=a,O=x") != cert_key("1", "CN=b,O=x")
    assert cert_key("1", "CN=a,O=x") != cert_key("2", "CN=a,O=x")


@pytest.mark.parametrize("bad", ["", "   ", "nodn", "/garbage", "CN=a,garbage"])
def test_bad_dns_are_refused(bad):
    with pytest.raises(ValueError):
        normalize_dn(bad)
