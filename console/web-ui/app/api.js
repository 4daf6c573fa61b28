// Every request goes to the hub's own origin. With a console login the browser sends its
// HttpOnly session cookie; writes carry the session's CSRF token. No token is ever in a URL.
let csrfToken = null;
let onUnauthorized = () => {};

export function setCsrfToken(token) { csrfToken = token; }
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem && (problem.detail || problem.title) ? (problem.detail || problem.title) : `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

export async function api(path, { method = 'GET', body, headers = {}, signal } = {}) {
  const sent = { Accept: 'application/json', ...headers };
  if (body !== undefined) sent['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) sent['X-CSRF-Token'] = csrfToken;
  const response = await fetch(path, {
    method,
    headers: sent,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    signal,
  });
  if (response.status === 401 && !path.startsWith('/api/v1/session')) onUnauthorized();
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch (e) { problem = { detail: response.statusText }; }
    throw new ApiError(response.status, problem);
  }
  if (response.status === 204) return { data: null, response };
  const type = response.headers.get('content-type') || '';
  const data = type.includes('json') ? await response.json() : await response.text();
  return { data, response };
}

export const get = async (path, opts) => (await api(path, opts)).data;

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x)); else q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

export const vid = (id) => encodeURIComponent(id);
