"""A fake Azure Instance Metadata Service and Resource Manager on loopback:
managed-identity tokens and a container registry resource, with scripted
failures (429, 500, 401) and token lifetimes."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

RESOURCE = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/contoso"


class ArmFake:
    def __init__(self, login="contoso.azurecr.io"):
        self.login = login
        self.endpoints = ["contoso.eastus.data.azurecr.io"]
        self.regional = []          # regionalEndpointHostNames, in the previews' answers
        self.regional_flag = None   # the previews' enabled flag; None: set when regional is
        # api-versions this "cloud" knows, each answered in its documented shape
        self.versions = {"2026-09-01-preview", "2026-01-01-preview", "2025-11-01", "2023-07-01"}
        self.statuses = []          # popped per resource request; then 200
        self.token_lifetime = 3600
        self.tokens = 0
        self.token_requests = []    # (path, headers)
        self.resource_requests = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                if url.path == "/metadata/identity/oauth2/token":
                    fake._token(self, url)
                elif url.path == RESOURCE:
                    fake._resource(self, url)
                else:
                    self._send(404, {"error": "not found"})

            def _send(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.Handler = Handler
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _token(self, h, url):
        with self.lock:
            self.token_requests.append((url, dict(h.headers)))
            if h.headers.get("Metadata") != "true":
                return h._send(400, {"error": "invalid_request", "error_description": "Required metadata header not specified"})
            q = parse_qs(url.query)
            if q.get("api-version") is None or q.get("resource") is None:
                return h._send(400, {"error": "invalid_request"})
            self.tokens += 1
            h._send(200, {"access_token": f"token-{self.tokens}",
                          "expires_on": str(int(time.time()) + self.token_lifetime),
                          "resource": q["resource"][0], "token_type": "Bearer"})

    def _resource(self, h, url):
        with self.lock:
            self.resource_requests.append((url, dict(h.headers)))
            auth = h.headers.get("Authorization", "")
            status = self.statuses.pop(0) if self.statuses else 200
            if not auth.startswith("Bearer token-"):
                return h._send(401, {"error": {"code": "AuthenticationFailed"}})
            if status == 401:
                return h._send(401, {"error": {"code": "ExpiredAuthenticationToken"}})
            if status != 200:
                return h._send(status, {"error": {"code": f"Status{status}"}})
            version = (parse_qs(url.query).get("api-version") or [""])[0]
            if version not in self.versions:
                return h._send(400, {"error": {
                    "code": "InvalidApiVersionParameter",
                    "message": f"The api-version '{version}' is invalid."}})
            h._send(200, {"id": RESOURCE, "name": "contoso",
                          "type": "Microsoft.ContainerRegistry/registries",
                          "properties": self.properties(version)})

    def properties(self, version):
        """RegistryGet's properties as the REST API specs' examples of each
        version show them: regional endpoints only in the previews, under a
        flag renamed between them; 2025-11-01's example spells the login
        server in mixed case ("myRegistry.azurecr.io")."""
        props = {"loginServer": self.login, "provisioningState": "Succeeded",
                 "adminUserEnabled": False, "dataEndpointEnabled": bool(self.endpoints),
                 "dataEndpointHostNames": list(self.endpoints),
                 "publicNetworkAccess": "Enabled", "zoneRedundancy": "Disabled"}
        enabled = bool(self.regional) if self.regional_flag is None else self.regional_flag
        if version == "2025-11-01":
            registry, rest = self.login.split(".", 1)
            props["loginServer"] = registry[:1].upper() + registry[1:] + "." + rest
            props["roleAssignmentMode"] = "LegacyRegistryPermissions"
        elif version == "2026-01-01-preview":
            props["regionalEndpointEnabled"] = enabled
            props["regionalEndpointHostNames"] = list(self.regional)
            props["dualStackEndpointsEnabled"] = False
        elif version == "2026-09-01-preview":
            props["regionalEndpoints"] = "Enabled" if enabled else "Disabled"
            props["regionalEndpointHostNames"] = list(self.regional)
            props["endpointProtocol"] = "IPv4"
        return props

    def close(self):
        self.server.shutdown()
        self.server.server_close()
