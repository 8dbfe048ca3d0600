import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { BrowserRouter, Navigate, Route, Routes, useLocation } from "react-router";
import "./index.css";
import { SessionProvider, useSession } from "./session";
import { Layout } from "./components/Layout";
import { AuthFrame } from "./pages/AuthFrame";
import { ErrorMessage, Button } from "./components/ui";
import { AgentsPage } from "./pages/Agents";
import { DeploymentsPage } from "./pages/Deployments";
import { DeploymentDetailPage } from "./pages/DeploymentDetail";
import { CredentialsPage } from "./pages/Credentials";
import { UsersPage } from "./pages/Users";
import { EnvironmentsPage } from "./pages/Environments";
import { DevicePage } from "./pages/Device";
import { InvitePage } from "./pages/Invite";
import { CallbackPage } from "./pages/Callback";

function Signed() {
  const s = useSession();
  return (
    <Layout>
      <Routes key={s.epoch}>
        <Route path="/" element={<Navigate to="/deployments" replace />} />
        <Route path="/agents" element={<AgentsPage />} />
        <Route path="/deployments" element={<DeploymentsPage />} />
        <Route path="/deployments/:id" element={<DeploymentDetailPage />} />
        <Route path="/credentials" element={<CredentialsPage />} />
        <Route path="/users" element={<UsersPage />} />
        <Route path="/environments" element={<EnvironmentsPage />} />
        <Route path="/device" element={<DevicePage />} />
        <Route path="*" element={<NotFound />} />
      </Routes>
    </Layout>
  );
}

function NotFound() {
  const loc = useLocation();
  return (
    <div>
      <h1 className="text-2xl font-semibold">Page not found</h1>
      <p className="mt-2 text-sm text-slate-500">The console has no page at {loc.pathname}.</p>
    </div>
  );
}

function App() {
  return (
    <BrowserRouter basename="/console">
      <Routes>
        <Route path="/callback" element={<CallbackPage />} />
        <Route path="/invite" element={<InvitePage />} />
        <Route
          path="*"
          element={
            <SessionProvider
              fallback={(b) =>
                b.kind === "error" ? (
                  <AuthFrame title="The console cannot start">
                    <ErrorMessage error={b.message} />
                    <Button className="mt-4 w-full" onClick={() => location.reload()}>
                      Try again
                    </Button>
                  </AuthFrame>
                ) : (
                  <div className="flex min-h-full items-center justify-center text-sm text-slate-500">Loading…</div>
                )
              }
            >
              <Signed />
            </SessionProvider>
          }
        />
      </Routes>
    </BrowserRouter>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
