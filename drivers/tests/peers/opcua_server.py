#!/usr/bin/env python3
"""OPC UA test peer for the Bifrost OPC UA driver tests (drivers/tests/opcua_asyncua.rs).

An asyncua server with known variables of several types in namespace 2 (the
first namespace this script registers). Prints READY on stdout once it is
listening; runs until killed.

    opcua_server.py --port PORT [--users USER:PASSWORD[,USER:PASSWORD...]]
                    [--secure PKI_DIR]

--users    only these user/password pairs may log in (anonymous is refused).
--secure   offer only Basic256Sha256 (Sign and SignAndEncrypt) endpoints, with a
           self-signed server certificate for --host kept in PKI_DIR
           (server_cert.der, server_key.pem; generated when absent, so a
           restarted server keeps its identity). Any client certificate is
           accepted.

Address space (all in ns=2, under the object ns=2;s=Bifrost):

    s=Bool      Boolean  true          writable
    s=Int16     Int16    -1234         writable
    s=UInt16    UInt16   54321         writable
    s=Int32     Int32    -123456789    writable
    s=Int64     Int64    -9007199254740993 (not exact as f64) writable
    s=Float     Float    1234.5678     writable
    s=Double    Double   2.718281828459045 writable
    s=String    String   "hello bifrost" writable
    s=Raw       Int16    2000          read-only (scaling: 0..4000 -> 0..100)
    s=ReadOnly  Int32    42            read-only
    s=Counter   UInt32   +1 every 100 ms, read-only
    i=1001      Double   21.5          read-only (numeric NodeId)
"""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole

NAMESPACE_URI = "urn:bifrost:test:opcua"


class PasswordUserManager:
    """Accepts exactly the configured user/password pairs."""

    def __init__(self, users):
        self.users = users

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


async def server_certificate(pki_dir: Path, host: str):
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    pki_dir.mkdir(parents=True, exist_ok=True)
    key_file = pki_dir / "server_key.pem"
    cert_file = pki_dir / "server_cert.der"
    await setup_self_signed_certificate(
        key_file,
        cert_file,
        "urn:freeopcua:python:server",
        host,
        [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
        {"countryName": "CH", "organizationName": "Bifrost tests", "commonName": "bifrost-opcua-peer"},
    )
    return cert_file, key_file


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--users", default="")
    parser.add_argument("--secure", default="")
    args = parser.parse_args()

    users = {}
    for pair in filter(None, args.users.split(",")):
        user, _, password = pair.partition(":")
        users[user] = password

    server = Server(user_manager=PasswordUserManager(users) if users else None)
    await server.init()
    server.set_endpoint(f"opc.tcp://{args.host}:{args.port}/bifrost/")
    server.set_server_name("Bifrost OPC UA test peer")

    if users:
        server.set_identity_tokens([ua.UserNameIdentityToken])
    if args.secure:
        # The certificate names the host clients connect to, as they check it.
        cert, key = await server_certificate(Path(args.secure), args.host)
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        server.set_security_policy(
            [
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                ua.SecurityPolicyType.Basic256Sha256_Sign,
            ]
        )
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])

    idx = await server.register_namespace(NAMESPACE_URI)
    assert idx == 2, f"expected our namespace at index 2, got {idx}"
    plant = await server.nodes.objects.add_object(ua.NodeId("Bifrost", idx), ua.QualifiedName("Bifrost", idx))

    async def var(name, value, vtype, writable):
        node = await plant.add_variable(ua.NodeId(name, idx), ua.QualifiedName(name, idx), ua.Variant(value, vtype))
        if writable:
            await node.set_writable()
        return node

    await var("Bool", True, ua.VariantType.Boolean, True)
    await var("Int16", -1234, ua.VariantType.Int16, True)
    await var("UInt16", 54321, ua.VariantType.UInt16, True)
    await var("Int32", -123456789, ua.VariantType.Int32, True)
    await var("Int64", -9007199254740993, ua.VariantType.Int64, True)
    await var("Float", 1234.5678, ua.VariantType.Float, True)
    await var("Double", 2.718281828459045, ua.VariantType.Double, True)
    await var("String", "hello bifrost", ua.VariantType.String, True)
    await var("Raw", 2000, ua.VariantType.Int16, False)
    await var("ReadOnly", 42, ua.VariantType.Int32, False)
    counter = await var("Counter", 0, ua.VariantType.UInt32, False)
    await plant.add_variable(
        ua.NodeId(1001, idx), ua.QualifiedName("Numeric", idx), ua.Variant(21.5, ua.VariantType.Double)
    )

    async with server:
        print("READY", flush=True)
        n = 0
        while True:
            await asyncio.sleep(0.1)
            n += 1
            await counter.write_value(ua.Variant(n, ua.VariantType.UInt32))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
