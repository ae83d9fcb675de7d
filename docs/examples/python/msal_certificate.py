"""An app-only token from ringside with Python msal and a certificate registered for the app
(`certificates` in ringside.toml, or POST /admin/apps {"certificates": [pem]}).
Trust ringside's dev certificate: REQUESTS_CA_BUNDLE=<data dir>/tls/cert.pem"""
import json
import os

import msal

app = msal.ConfidentialClientApplication(
    os.environ["CLIENT_ID"],
    client_credential={
        "private_key": open(os.environ["CLIENT_KEY_PEM"]).read(),
        "thumbprint": os.environ["CLIENT_CERT_SHA1"],  # hex SHA-1 of the certificate
    },
    authority=f"{os.environ['RINGSIDE_HTTPS']}/{os.environ['TENANT_ID']}",
    instance_discovery=False,
)
result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
print(json.dumps({"token": bool(result.get("access_token")), "error": result.get("error"), "description": result.get("error_description")}))
