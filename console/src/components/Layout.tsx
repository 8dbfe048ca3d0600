import { useState, type ReactNode } from "react";
import { NavLink } from "react-router";
import { Menu, MenuButton, MenuItem, MenuItems, MenuSeparator, MenuSection, MenuHeading } from "@headlessui/react";
import { useSession } from "../session";
import { ErrorMessage } from "./ui";
import { ChangePasswordDialog } from "../pages/ChangePassword";

const nav = [
  { to: "/agents", label: "Agents" },
  { to: "/deployments", label: "Deployments" },
  { to: "/credentials", label: "Credentials" },
  { to: "/users", label: "Users" },
  { to: "/environments", label: "Environments" },
];

export function Logo() {
  return (
    <span className="flex items-center gap-2">
      <img src="/console/favicon.svg" alt="" className="size-7" />
      <span className="text-lg font-semibold tracking-tight text-white">Sortie</span>
    </span>
  );
}

export function Layout({ children }: { children: ReactNode }) {
  return (
    <div className="flex min-h-full">
      <aside className="hidden w-56 shrink-0 flex-col bg-slate-900 px-3 py-4 md:flex">
        <div className="px-2 pb-6">
          <Logo />
        </div>
        <nav aria-label="Main" className="flex flex-col gap-0.5">
          {nav.map((n) => (
            <NavLink
              key={n.to}
              to={n.to}
              className={({ isActive }) =>
                `rounded-md px-3 py-2 text-sm font-medium ${isActive ? "bg-slate-800 text-white" : "text-slate-300 hover:bg-slate-800/60 hover:text-white"}`
              }
            >
              {n.label}
            </NavLink>
          ))}
        </nav>
      </aside>
      <div className="flex min-w-0 flex-1 flex-col">
        <header className="flex h-14 items-center justify-between gap-4 border-b border-slate-200 bg-white px-4 md:px-8">
          <nav aria-label="Main (small screens)" className="flex gap-3 overflow-x-auto text-sm md:hidden">
            {nav.map((n) => (
              <NavLink key={n.to} to={n.to} className={({ isActive }) => (isActive ? "font-semibold text-indigo-700" : "text-slate-600")}>
                {n.label}
              </NavLink>
            ))}
          </nav>
          <div className="hidden md:block" />
          <UserMenu />
        </header>
        <main className="mx-auto w-full max-w-6xl flex-1 px-4 py-8 md:px-8">{children}</main>
      </div>
    </div>
  );
}

function UserMenu() {
  const s = useSession();
  const [error, setError] = useState<unknown>(null);
  const [pw, setPw] = useState(false);
  const others = s.environments.filter((e) => e.id !== s.principal.envId);
  return (
    <div className="flex items-center gap-3">
      {error ? <ErrorMessage error={error} /> : null}
      <Menu as="div" className="relative">
        <MenuButton
          data-testid="user-menu"
          className="flex items-center gap-2 rounded-md px-2 py-1.5 text-sm hover:bg-slate-100 focus-visible:outline-2 focus-visible:outline-indigo-600"
        >
          <span className="flex size-7 items-center justify-center rounded-full bg-indigo-100 text-xs font-semibold text-indigo-700">
            {(s.principal.name || "?").slice(0, 1).toUpperCase()}
          </span>
          <span className="text-left leading-tight">
            <span data-testid="principal-name" className="block font-medium text-slate-900">
              {s.principal.name}
            </span>
            <span data-testid="current-environment" className="block text-xs text-slate-500">
              {s.principal.orgName} · {s.envName}
            </span>
          </span>
          <span aria-hidden="true" className="text-slate-400">▾</span>
        </MenuButton>
        <MenuItems
          anchor="bottom end"
          className="z-40 mt-1 w-64 rounded-md bg-white p-1 text-sm shadow-lg ring-1 ring-slate-200 focus:outline-none"
        >
          {s.isUser && others.length > 0 && (
            <>
              <MenuSection>
                <MenuHeading className="px-3 py-1.5 text-xs font-semibold uppercase tracking-wide text-slate-500">
                  Switch environment
                </MenuHeading>
                {others.map((e) => (
                  <MenuItem key={e.id}>
                    <button
                      type="button"
                      className="block w-full rounded px-3 py-1.5 text-left data-focus:bg-slate-100"
                      onClick={() => {
                        setError(null);
                        s.switchEnvironment(e.id).catch(setError);
                      }}
                    >
                      {e.name}
                    </button>
                  </MenuItem>
                ))}
              </MenuSection>
              <MenuSeparator className="my-1 h-px bg-slate-200" />
            </>
          )}
          {s.isUser && (
            <MenuItem>
              <button type="button" className="block w-full rounded px-3 py-1.5 text-left data-focus:bg-slate-100" onClick={() => setPw(true)}>
                Change password
              </button>
            </MenuItem>
          )}
          <MenuItem>
            <button
              type="button"
              className="block w-full rounded px-3 py-1.5 text-left text-rose-700 data-focus:bg-rose-50"
              onClick={() => {
                setError(null);
                s.signOut().catch(setError);
              }}
            >
              Sign out
            </button>
          </MenuItem>
        </MenuItems>
      </Menu>
      <ChangePasswordDialog open={pw} onClose={() => setPw(false)} />
    </div>
  );
}
