// Types of postgres-bin.mjs (plain JavaScript so that it runs before anything is compiled).
export declare function isExecutable(path: string): boolean;
/** The newest /usr/lib/postgresql/<major>/bin with initdb and postgres, or FERRY_PG_BIN. */
export declare function postgresBinDir(): string | undefined;
