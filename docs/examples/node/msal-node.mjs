// An app-only token from ringside with @azure/msal-node (client credentials).
// Trust ringside's dev certificate: NODE_EXTRA_CA_CERTS=<data dir>/tls/cert.pem
import { ConfidentialClientApplication } from "@azure/msal-node";

const authorityHost = process.env.RINGSIDE_HTTPS; // e.g. https://localhost:8443
const app = new ConfidentialClientApplication({
  auth: {
    clientId: process.env.CLIENT_ID,
    clientSecret: process.env.CLIENT_SECRET,
    authority: `${authorityHost}/${process.env.TENANT_ID}`,
    // ringside is not a Microsoft cloud: trust its authority as is (no instance discovery).
    knownAuthorities: [new URL(authorityHost).host],
  },
});

const result = await app.acquireTokenByClientCredential({
  scopes: ["https://graph.microsoft.com/.default"],
});
console.log(JSON.stringify({ tokenType: result.tokenType, expiresOn: result.expiresOn, token: result.accessToken.length > 0 }));
