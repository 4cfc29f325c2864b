// The REST client: tokens, refresh, and errors in plain words.

export interface Problem { type: string; title: string; status: number; detail: string; field?: string }

export class ApiError extends Error {
  constructor(public status: number, public problem: Problem | null, message: string) { super(message); }
}

const ACCESS = "tributary.access";
const REFRESH = "tributary.refresh";

export function token(): string | null { return localStorage.getItem(ACCESS); }

export function setSession(s: { access_token: string; refresh_token: string }) {
  localStorage.setItem(ACCESS, s.access_token);
  localStorage.setItem(REFRESH, s.refresh_token);
}

export function clearSession() {
  localStorage.removeItem(ACCESS);
  localStorage.removeItem(REFRESH);
}

/** A sentence a person can act on, from a problem response. */
export function plain(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 0) return "Cannot reach the server. Check your connection; we will keep trying.";
    if (e.status === 401) return "Your session has ended. Please log in again.";
    if (e.status === 403) return "You do not have permission to do that.";
    if (e.problem?.detail) return e.problem.detail.charAt(0).toUpperCase() + e.problem.detail.slice(1) + ".";
    return e.message;
  }
  return String(e);
}

let refreshing: Promise<boolean> | null = null;

async function refresh(): Promise<boolean> {
  const rt = localStorage.getItem(REFRESH);
  if (!rt) return false;
  refreshing ??= (async () => {
    try {
      const res = await fetch("/api/v1/auth/refresh", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refresh_token: rt }),
      });
      if (!res.ok) return false;
      setSession(await res.json());
      return true;
    } catch { return false; } finally { setTimeout(() => { refreshing = null; }, 0); }
  })();
  return refreshing;
}

/** Calls the API; refreshes the session once on 401. */
export async function api<T = unknown>(method: string, path: string, body?: unknown, retry = true): Promise<T> {
  const headers: Record<string, string> = {};
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, null, "network error");
  }
  if (res.status === 401 && retry && path !== "/api/v1/auth/login" && (await refresh())) {
    return api<T>(method, path, body, false);
  }
  if (!res.ok) {
    let problem: Problem | null = null;
    try { problem = await res.json(); } catch { /* not JSON */ }
    throw new ApiError(res.status, problem, problem?.detail ?? `${res.status} ${res.statusText}`);
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export interface Device {
  id: string; name: string; labels: Record<string, string>; tags: string[]; profile_id: string | null;
  token_hint: string; version: number; created_at: number; access_token?: string;
  mqtt: { username: string; client_id: string | null } | null;
}
export interface Sample { ts: number; value: number | string | boolean }
export interface Me { user_id: string; email: string; tenant_id: string; role: string; tenants: { tenant_id: string; name: string; role: string }[] }
export interface Page<T> { data: T[]; next_cursor: string | null }
