// A bot on Microsoft's Kiota-based beta SDK for TypeScript (@microsoft/msgraph-beta-sdk) and
// @azure/identity places a call through ringside with the SDK's own models and adapter.
// Trust ringside's dev certificate: NODE_EXTRA_CA_CERTS=<data dir>/tls/cert.pem
import { ClientSecretCredential } from "@azure/identity";
import { AzureIdentityAuthenticationProvider } from "@microsoft/kiota-authentication-azure";
import { HttpMethod, RequestInformation } from "@microsoft/kiota-abstractions";
import { GraphBetaRequestAdapter } from "@microsoft/msgraph-beta-sdk";
import { createCallFromDiscriminatorValue, serializeCall } from "@microsoft/msgraph-beta-sdk/models/index.js";

const credential = new ClientSecretCredential(
  process.env.TENANT_ID,
  process.env.CLIENT_ID,
  process.env.CLIENT_SECRET,
  { authorityHost: process.env.RINGSIDE_HTTPS, disableInstanceDiscovery: true },
);
const graph = new URL(process.env.RINGSIDE_GRAPH);
// The token is sent only to the allowed hosts (host names, no port).
const auth = new AzureIdentityAuthenticationProvider(
  credential,
  ["https://graph.microsoft.com/.default"],
  undefined,
  new Set([graph.hostname]),
);
const adapter = new GraphBetaRequestAdapter(auth);
adapter.baseUrl = `${graph.origin}/beta`;

// POST /communications/calls, built and parsed by the SDK's models.
const request = new RequestInformation(HttpMethod.POST, "{+baseurl}/communications/calls");
request.pathParameters.baseurl = adapter.baseUrl;
request.setContentFromParsable(adapter, "application/json", {
  odataType: "#microsoft.graph.call",
  callbackUri: process.env.CALLBACK_URI,
  requestedModalities: ["audio"],
  mediaConfig: { odataType: "#microsoft.graph.serviceHostedMediaConfig" },
  targets: [{ odataType: "#microsoft.graph.invitationParticipantInfo", identity: { user: { id: process.env.USER_ID } } }],
}, serializeCall);
const call = await adapter.send(request, createCallFromDiscriminatorValue, undefined);
console.log(JSON.stringify({ id: call.id, state: call.state }));
