// A bot on @azure/identity and @microsoft/microsoft-graph-client places a call through ringside.
// Trust ringside's dev certificate: NODE_EXTRA_CA_CERTS=<data dir>/tls/cert.pem
import { ClientSecretCredential } from "@azure/identity";
import { Client } from "@microsoft/microsoft-graph-client";
import { TokenCredentialAuthenticationProvider } from "@microsoft/microsoft-graph-client/authProviders/azureTokenCredentials/index.js";

const credential = new ClientSecretCredential(
  process.env.TENANT_ID,
  process.env.CLIENT_ID,
  process.env.CLIENT_SECRET,
  // Tokens come from ringside's authority, not login.microsoftonline.com.
  { authorityHost: process.env.RINGSIDE_HTTPS, disableInstanceDiscovery: true },
);
const graph = new URL(process.env.RINGSIDE_GRAPH); // e.g. https://localhost:8443
const client = Client.initWithMiddleware({
  authProvider: new TokenCredentialAuthenticationProvider(credential, {
    scopes: ["https://graph.microsoft.com/.default"],
  }),
  baseUrl: `${graph.origin}/`,
  defaultVersion: "beta",
  // The token is sent only to Graph's own hosts and these (host names, no port).
  customHosts: new Set([graph.hostname]),
});

const call = await client.api("/communications/calls").post({
  "@odata.type": "#microsoft.graph.call",
  callbackUri: process.env.CALLBACK_URI,
  requestedModalities: ["audio"],
  mediaConfig: { "@odata.type": "#microsoft.graph.serviceHostedMediaConfig" },
  targets: [{ identity: { user: { id: process.env.USER_ID } } }],
});
console.log(JSON.stringify({ id: call.id, state: call.state }));
