"""An app-only token from ringside with Python msal (client credentials, secret).
Trust ringside's dev certificate: REQUESTS_CA_BUNDLE=<data dir>/tls/cert.pem"""
import json
import os

import msal

app = msal.ConfidentialClientApplication(
    os.environ["CLIENT_ID"],
    client_credential=os.environ["CLIENT_SECRET"],
    authority=f"{os.environ['RINGSIDE_HTTPS']}/{os.environ['TENANT_ID']}",
    # ringside is not a Microsoft cloud: use its authority as is.
    instance_discovery=False,
)
result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
print(json.dumps({"token": bool(result.get("access_token")), "error": result.get("error")}))
