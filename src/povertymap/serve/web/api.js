// The service's REST API as the page calls it: same origin, `Authorization: Bearer <key>`
// when a key is kept in this tab's session storage, JSON in and out.

const KEY = "povertymap.key";

/** The key kept for this tab ("" when none). */
export function storedKey() {
  try {
    return sessionStorage.getItem(KEY) || "";
  } catch {
    return "";
  }
}

/** Keep `key` for this tab (an empty key forgets it). */
export function storeKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY, key);
    else sessionStorage.removeItem(KEY);
  } catch {
    /* storage refused (private mode): the key lasts until the page reloads */
  }
}

/** `{ok, status, data}` of one API call; `data` is the parsed JSON body (or null). */
export async function call(path, { method = "GET", body = null, key = storedKey() } = {}) {
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== null) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === null ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (err) {
    return { ok: false, status: 0, data: null };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { ok: response.ok, status: response.status, data };
}

/** The API path of map `name` (URL-escaped). */
export function mapPath(name, rest = "") {
  return `/v1/maps/${encodeURIComponent(name)}${rest}`;
}
