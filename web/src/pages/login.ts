import { api, ApiError, plain, setSession } from "../api";
import { h, main } from "../ui";

export async function loginPage(done: () => Promise<void>) {
  const m = main();
  const error = h("p", { class: "error", role: "alert" });
  const email = h("input", { id: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "card narrow", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in to Tributary"),
    h("label", { for: "email" }, "Email"), email,
    h("label", { for: "password" }, "Password"), password,
    error,
    h("button", { type: "submit" }, "Log in"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      setSession(await api("POST", "/api/v1/auth/login", { email: email.value, password: password.value }));
      await done();
    } catch (err) {
      // Here a 401 means wrong credentials, not an ended session.
      error.textContent = err instanceof ApiError && err.status === 401 ? "Invalid email or password." : plain(err);
    }
  });
  m.append(form);
  email.focus();
  return null;
}
