/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** Prefix for API requests; empty (the default) means same origin. */
  readonly VITE_API_BASE?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
